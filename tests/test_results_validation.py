"""Readers of results.csv reject or exclude non-finite and out-of-range metrics, naming the trial
and the column: a damaged or hand-edited file never becomes the front or an infinite hypervolume."""
import math

import pytest

from analysis.common import load_sweep, split_usable
from analysis.pareto import pareto_analysis
from rcsweep.cli import main
from rcsweep.results import RESULTS_FILE, load_results

from analysis_helpers import STANDARD_ROWS, write_sweep


def _edit(folder, trial_id, column, value):
    import csv

    path = folder / RESULTS_FILE
    rows = list(csv.DictReader(open(path, newline="")))
    for r in rows:
        if r["trial_id"] == trial_id:
            r[column] = value
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize("column, value, reason", [
    ("robust_acc", "inf", "robust_acc=inf is not finite"),
    ("robust_acc", "-inf", "robust_acc=-inf is not finite"),
    ("clean_acc", "1.5", "clean_acc=1.5 is above 1"),
    ("robust_acc", "-0.2", "robust_acc=-0.2 is below 0"),
    ("model_bits", "-5", "model_bits=-5 is below 0"),
    ("model_bits", "lots", "model_bits='lots' is not a number"),
])
def test_an_invalid_metric_excludes_its_trial_with_a_message(tmp_path, column, value, reason):
    write_sweep(tmp_path, STANDARD_ROWS)
    before = pareto_analysis(load_sweep(tmp_path), "robust_acc:max,model_bits:min")
    _edit(tmp_path, "t03", column, value)  # t03 is on the front
    problems = []
    df = load_results(tmp_path, problems=problems)
    assert problems == [f"trial t03: {reason}"]
    row = df.set_index("trial_id").loc["t03"]
    assert row["flags"] == "invalid" and reason in row["invalid_reason"]
    usable, excluded = split_usable(df, ["robust_acc", "model_bits"])
    assert "t03" not in set(usable["trial_id"])
    assert excluded.set_index("trial_id").loc["t03", "reason"] == f"invalid: {reason}"
    res = pareto_analysis(df, "robust_acc:max,model_bits:min")
    assert math.isfinite(res.hypervolume) and res.hypervolume < before.hypervolume
    assert "t03" not in set(res.front["trial_id"]) and len(res.front) >= 1


def test_cli_names_the_trial_and_column_and_leaves_the_file_intact(tmp_path, capsys):
    write_sweep(tmp_path, STANDARD_ROWS)
    _edit(tmp_path, "t03", "robust_acc", "inf")
    raw = (tmp_path / RESULTS_FILE).read_bytes()
    assert main(["pareto", str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 0
    captured = capsys.readouterr()
    assert "trial t03: robust_acc=inf is not finite; the trial is excluded" in captured.err
    assert (tmp_path / RESULTS_FILE).read_bytes() == raw  # a reader never rewrites the results
    import pandas as pd

    written = pd.read_csv(tmp_path / "p.csv", dtype={"trial_id": str})
    assert "t03" not in set(written["trial_id"]) and written["robust_acc"].map(math.isfinite).all()


def test_running_and_failed_rows_are_checked_too(tmp_path):
    write_sweep(tmp_path, STANDARD_ROWS)
    _edit(tmp_path, "t07", "time_pretrain_s", "nan")  # an empty-like cell is fine
    _edit(tmp_path, "t08", "flops_pretrain", "-1")
    problems = []
    load_results(tmp_path, problems=problems)
    assert problems == ["trial t08: flops_pretrain=-1 is below 0"]
