"""results.csv: concurrent writers never corrupt it; a write killed midway leaves the previous
version intact; load_results decodes types."""
import multiprocessing as mp
import os

import pytest

from rcsweep.config import TrialConfig
from rcsweep.results import load_results, read_rows, record_to_row, upsert_rows


def _writer(folder, worker, n):
    params = TrialConfig(seed=worker).to_flat()
    for i in range(n):
        upsert_rows(folder, [record_to_row(f"w{worker}_{i}", "running", params=params)])
        rec = {"params": params, "metrics": {"clean_acc": 0.5 + i / 100, "robust_acc": 0.1, "suspect": False,
                                             "robust_acc_curve": {"0.1": 0.1}}}
        upsert_rows(folder, [record_to_row(f"w{worker}_{i}", "finished", rec)])


def test_concurrent_writers_never_corrupt_results(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    df = load_results(tmp_path)
    assert len(df) == 60 and df["trial_id"].is_unique
    assert (df["status"] == "finished").all()
    assert df["robust_acc_curve"].map(lambda d: d == {"0.1": 0.1}).all()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_write_killed_midway_keeps_previous_version(tmp_path, monkeypatch):
    params = TrialConfig().to_flat()
    upsert_rows(tmp_path, [record_to_row("a", "running", params=params)])
    before = (tmp_path / "results.csv").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        upsert_rows(tmp_path, [record_to_row("b", "running", params=params)])
    monkeypatch.undo()
    assert (tmp_path / "results.csv").read_text() == before
    assert [r["trial_id"] for r in read_rows(tmp_path)] == ["a"]


def test_types_and_inapplicable_parameters(tmp_path):
    cfg = TrialConfig(compression="quant", weight_bits=4, eps_curve=(0.05,))
    rec = {"params": cfg.to_flat(), "metrics": {"clean_acc": 0.9, "suspect": True, "suspect_reason": "x; y",
                                                 "model_bits": 1000}}
    upsert_rows(tmp_path, [record_to_row("q", "finished", rec), record_to_row("f", "failed", params=cfg.to_flat(),
                                                                              error="boom\nline two")])
    df = load_results(tmp_path).set_index("trial_id")
    assert df.loc["q", "weight_bits"] == 4 and df.loc["q", "model_bits"] == 1000
    assert df.loc["q", "suspect"] is True or df.loc["q", "suspect"] == True  # noqa: E712
    assert df.loc["q", "eps_curve"] == [0.05]
    assert df["sparsity"].isna().all()  # does not apply: empty
    assert df.loc["f", "error"] == "boom line two"


def test_written_files_get_ordinary_permissions_not_the_temp_files(tmp_path):
    """Atomic writes go through a 0600 temporary file; the result must be readable as an ordinary
    file would be (0666 less the umask), e.g. by other nodes of a cluster on shared storage."""
    import os
    import stat

    from rcsweep.fileio import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        upsert_rows(tmp_path, [{"trial_id": "t1", "status": "running"}])
    finally:
        os.umask(old)
    for name in ("r.json", "results.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
