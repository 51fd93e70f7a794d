"""The bad-input corpus: every malformed sweep file in tests/data/bad_sweeps is rejected before
anything starts, with one line naming the problem (the file's first-line '# expect:' text), exit
code 2, and nothing written."""
from pathlib import Path

import pytest

from rcsweep.cli import main

CORPUS = sorted((Path(__file__).parent / "data" / "bad_sweeps").glob("*.yaml"))


def _expected(path: Path):
    first = path.read_bytes().split(b"\n")[0].decode("utf-8", "replace")
    return first.split("expect: ", 1)[1] if "expect: " in first else None


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
@pytest.mark.parametrize("command", ["validate", "run", "trial"])
def test_bad_sweep_file_is_rejected(path, command, tmp_path, capsys):
    if command == "run":
        args = ["run", str(path), "--storage", str(tmp_path / "store")]
    elif command == "trial":
        args = ["trial", str(path), "--out", str(tmp_path / "out")]
    else:
        args = ["validate", str(path)]
    try:
        rc = main(args)
    except SystemExit as e:  # argparse-level errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    expected = _expected(path)
    if expected:
        assert expected in err
    assert list(tmp_path.iterdir()) == []  # nothing written
    import sys

    if "ray" in sys.modules:
        import ray

        assert not ray.is_initialized()


BAD_COMMAND_LINES = [
    (["run"], "the following arguments are required"),
    (["run", "sweeps/quickstart.yaml", "--num-samples", "0"], "num-samples"),
    (["run", "sweeps/quickstart.yaml", "--max-concurrent", "-1"], "max-concurrent"),
    (["run", "sweeps/quickstart.yaml", "--num-samples", "x"], "invalid int value"),
    (["trial", "sweeps/quickstart.yaml", "--set", "compression=prune", "weight_bits=4"], "weight_bits"),
    (["trial", "sweeps/quickstart.yaml", "--set", "eps_eval=1.5"], "eps_eval"),
    (["trial", "sweeps/quickstart.yaml", "--set", "nonsense=1"], "nonsense: unknown parameter"),
    (["trial", "sweeps/quickstart.yaml", "--set", "precision=fp16"], "precision: must be one of fp32, bf16"),
    (["trial", "sweeps/quickstart.yaml", "--device", "cuda:7"], "--device cuda:7: "),
    (["trial", "sweeps/quickstart.yaml", "--device", "tpu"], "--device: 'tpu' is not a device"),
    (["resume", "/nonexistent/sweep"], "/nonexistent/sweep"),
    (["status", "/nonexistent/sweep"], "/nonexistent/sweep"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv, needle", BAD_COMMAND_LINES, ids=[" ".join(a) for a, _ in BAD_COMMAND_LINES])
def test_bad_command_line_is_rejected(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    argv = [*argv, "--out", str(tmp_path / "o")] if argv[0] == "trial" else argv
    if argv[0] == "run" and len(argv) > 1:
        argv = [*argv, "--storage", str(tmp_path / "store")]
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert needle in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
