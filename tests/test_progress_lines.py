"""The driver's progress lines (rcsweep.sweep.progress.SweepProgress): a failed trial's line says
why it failed, from Tune's error text or, where Tune has none yet, from the trial's own record."""
from types import SimpleNamespace

from rcsweep.results import read_rows, record_to_row, upsert_rows
from rcsweep.sweep.progress import SweepProgress

PARAMS = {"pretrain": "standard", "compression": "prune_structured", "sparsity": 0.5, "finetune": "adversarial"}


def trial(error):
    return SimpleNamespace(trial_id="t1", config={"trial": PARAMS}, get_error=lambda: error)


def test_a_failure_tune_has_no_text_for_is_named_from_the_trials_record(tmp_path, capsys):
    upsert_rows(tmp_path, [record_to_row("t1", "failed", params=PARAMS, error="TrainingCollapsed: stayed at 0.119")])
    SweepProgress(tmp_path, [("robust_acc", "max")], 1).on_trial_error(0, [], trial(None))
    assert "FAILED  t1  TrainingCollapsed: stayed at 0.119" in capsys.readouterr().out


def test_tunes_error_text_is_said_and_recorded_where_the_trial_could_not_record_it(tmp_path, capsys):
    SweepProgress(tmp_path, [("robust_acc", "max")], 1).on_trial_error(0, [], trial("Traceback\n  ...\nOSError: disk full\n"))
    assert "FAILED  t1  OSError: disk full" in capsys.readouterr().out
    (row,) = read_rows(tmp_path)
    assert row["status"] == "failed" and row["error"] == "OSError: disk full"


def test_with_neither_the_line_points_to_the_error_file(tmp_path, capsys):
    SweepProgress(tmp_path, [("robust_acc", "max")], 1).on_trial_error(0, [], trial(""))
    assert "unknown error (see the trial's error file)" in capsys.readouterr().out
