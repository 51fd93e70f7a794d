"""``rcsweep run | resume | status | validate``: bad input is one line naming the problem, exit code
2, no trial started and nothing written. (tests/test_bad_input_corpus.py holds the wider corpus.)"""
import sys

import pytest
import yaml
from conftest_ray import ray_local  # noqa: F401  (session fixture)

from rcsweep.cli import main

GOOD = {"fixed": {"dataset": "digits", "pretrain_epochs": 1},
        "space": {"compression": {"choice": ["none", "quant"]}, "weight_bits": {"choice": [4, 8]}}}
BAD_FILES = [
    ("malformed", "fixed: {dataset: digits\nspace: [", "not valid YAML"),
    ("unknown_key", {**GOOD, "num_smaples": 3}, "num_smaples: unknown sweep field (did you mean 'num_samples'?)"),
    ("bad_range", {**GOOD, "space": {"sparsity": {"uniform": [0.9, 0.1]}, "compression": {"choice": ["prune"]}}},
     "space.sparsity.uniform: low 0.9 must be below high 0.1"),
    ("objective_not_metric", {**GOOD, "objectives": {"robustness": "max"}}, "objectives.robustness: is not a metric"),
]


def _write(tmp_path, name, content):
    path = tmp_path / "in" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def _run_cli(argv, capsys):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr()


@pytest.mark.parametrize("name, content, needle", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_sweep_file_is_refused_before_ray_starts(name, content, needle, tmp_path, capsys):
    rc, out = _run_cli(["run", _write(tmp_path, name, content), "--storage", tmp_path / "store"], capsys)
    assert rc == 2 and needle in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()
    if "ray" in sys.modules:  # validated before Ray could start
        import ray

        assert not ray.is_initialized()


def test_storage_uri_that_is_not_local_is_refused(tmp_path, capsys):
    rc, out = _run_cli(["run", _write(tmp_path, "good", GOOD), "--storage", "s3://bucket/x"], capsys)
    assert rc == 2 and "--storage: s3:// storage is not supported" in out.err


def test_validate_prints_count_space_and_cost(tmp_path, capsys):
    rc, out = _run_cli(["validate", _write(tmp_path, "good", {**GOOD, "search": "grid"})], capsys)
    assert rc == 0
    assert "3 trials, search grid" in out.out and "space weight_bits: choice [4, 8]" in out.out
    assert "grid point 2: {'compression': 'quant', 'weight_bits': 8}" in out.out
    assert "estimated training compute" in out.out and "1 distinct model(s), shared" in out.out
    rc, out = _run_cli(["validate", _write(tmp_path, "good", {**GOOD, "search": "grid"}), "--num-samples", "9"], capsys)
    assert rc == 2 and "--num-samples: 9 is more than the grid's 3 points plus 0 references" in out.err


@pytest.mark.parametrize("resources, needle", [({"cpu": 64}, "resources.cpu: each trial asks for 64 CPUs"),
                                               ({"gpu": 1}, "resources.gpu: each trial asks for 1 GPUs, but none")])
def test_resources_no_node_has_are_refused_before_any_trial(resources, needle, ray_local, tmp_path, capsys):  # noqa: F811
    rc, out = _run_cli(["run", _write(tmp_path, "big", {**GOOD, "resources": resources}), "--storage",
                        tmp_path / "store"], capsys)
    assert rc == 2 and needle in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_an_existing_sweep_folder_is_refused_with_a_hint(tmp_path, capsys):
    (tmp_path / "store" / "good").mkdir(parents=True)
    rc, out = _run_cli(["run", _write(tmp_path, "good", GOOD), "--storage", tmp_path / "store"], capsys)
    assert rc == 2 and "already exists: continue it with 'rcsweep resume" in out.err
    rc, out = _run_cli(["resume", tmp_path / "store" / "good"], capsys)
    assert rc == 2 and "is not a rcsweep sweep folder (no sweep.yaml)" in out.err
