"""``rcsweep pareto | report | compare`` on synthetic sweep folders, called in-process."""
import csv
import json
import math
import subprocess
import sys

import pytest
from analysis_helpers import STANDARD_ROWS, write_sweep

from rcsweep.cli import main


def _brute_force_front(folder):
    """Non-dominated finished, non-suspect rows of results.csv, read without the analysis code."""
    with open(folder / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "finished" and r["suspect"].lower() != "true"]
    pts = {r["trial_id"]: (float(r["robust_acc"]), -float(r["model_bits"])) for r in rows}
    return {a for a, p in pts.items()
            if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for b, q in pts.items() if b != a)}


def test_pareto_writes_the_front_and_the_excluded(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep", STANDARD_ROWS)
    assert main(["pareto", str(sweep)]) == 0
    for name in ("pareto.csv", "pareto_excluded.csv", "pareto.json", "pareto.png", "pareto.svg"):
        assert (sweep / name).is_file(), name
    with open(sweep / "pareto.csv", newline="") as f:
        front = list(csv.DictReader(f))
    assert {r["trial_id"] for r in front} == _brute_force_front(sweep) == {"t01", "t03", "t05"}
    assert {"pretrain", "compression", "sparsity", "finetune", "seed", "clean_acc", "robust_acc", "model_bits",
            "time_pretrain_s", "flops_finetune"} <= set(front[0])
    with open(sweep / "pareto_excluded.csv", newline="") as f:
        excluded = {r["trial_id"]: r["reason"] for r in csv.DictReader(f)}
    assert set(excluded) == {"t06", "t07", "t08"} and excluded["t06"].startswith("suspect")
    summary = json.loads((sweep / "pareto.json").read_text())
    assert summary["hypervolume"] == pytest.approx(0.5 + 0.4 * (math.log10(20) - 1))
    assert "dense_model_bits" in summary["normalisation"]["model_bits"]
    out = capsys.readouterr().out
    assert "hypervolume: 0.62" in out


def test_pareto_by_group_and_custom_out(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", STANDARD_ROWS)
    out = tmp_path / "figs" / "front.csv"
    assert main(["pareto", str(sweep), "--by", "finetune", "--out", str(out),
                 "--objectives", "robust_acc:max,clean_acc:max,model_bits:min"]) == 0
    for name in ("front.csv", "front_excluded.csv", "front_groups.csv", "front.json", "front.png", "front.svg"):
        assert (out.parent / name).is_file(), name
    groups = json.loads((out.parent / "front.json").read_text())["group_hypervolume"]
    assert set(groups) == {"none", "clean", "adversarial"}


def test_pareto_on_a_running_sweep_ignores_partial_rows(tmp_path):
    rows = [r for r in STANDARD_ROWS if r[0] in ("t01", "t05")] + [(f"r{i}", "running", {}) for i in range(3)]
    sweep = write_sweep(tmp_path / "sweep", rows)
    assert main(["pareto", str(sweep)]) == 0
    with open(sweep / "pareto.csv", newline="") as f:
        assert {r["trial_id"] for r in csv.DictReader(f)} == {"t01", "t05"}


@pytest.mark.parametrize("case, args, message", [
    ("nofolder", ["pareto", "{tmp}/missing"], "is not a folder"),
    ("notsweep", ["pareto", "{tmp}"], "not a rcsweep sweep folder"),
    ("column", ["pareto", "{sweep}", "--objectives", "robust:max,model_bits:min"], "'robust' is not a column"),
    ("direction", ["pareto", "{sweep}", "--objectives", "robust_acc:high,model_bits:min"], "COLUMN:max"),
    ("one", ["pareto", "{sweep}", "--objectives", "robust_acc:max"], "at least two objectives"),
    ("by", ["pareto", "{sweep}", "--by", "pretraining"], "did you mean 'pretrain'"),
    ("out", ["pareto", "{sweep}", "--out", "{tmp}/front.png"], "must be a .csv"),
    ("empty", ["pareto", "{empty}"], "no usable finished trials"),
    ("report", ["report", "{empty}"], "no usable finished trials"),
    ("compare", ["compare", "{sweep}", "--out", "{tmp}/c.png"], "at least two"),
    # an existing file as the report's folder (a new user's --out s1.yaml was a traceback)
    ("report_out_file", ["report", "{sweep}", "--out", "{sweep}/results.csv"], "a file is in the way of this folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, args, message):
    sweep = write_sweep(tmp_path / "sweep", STANDARD_ROWS)
    empty = write_sweep(tmp_path / "empty", [r for r in STANDARD_ROWS if r[1] != "finished"])
    argv = [a.format(tmp=tmp_path, sweep=sweep, empty=empty) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rcsweep: error:") and message in err, err


def test_report_writes_markdown_tables_and_figures(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", STANDARD_ROWS)
    assert main(["report", str(sweep)]) == 0
    out = sweep / "report"
    md = (out / "report.md").read_text()
    for section in ("## Pareto front", "### Robust accuracy at ε=0.1 (L∞) (%)", "### Clean accuracy",
                    "## Robustness curves", "## Compute", "## Flagged trials", "## Failed trials"):
        assert section in md, section
    assert "t06" in md and "large_eps" in md and "boom" in md
    assert "| standard pretrain \\| prune 90% |" in md  # a study-table row
    # energy beside seconds and FLOPs, labelled as the estimate it is (analysis_helpers' records)
    compute = md.split("## Compute")[1].split("\n## ")[0]
    header = next(line for line in compute.splitlines() if line.startswith("| route"))
    assert "pretrain (s)" in header and "pretrain FLOPs" in header and "pretrain kWh (estimated)" in header
    assert "**estimate**" in compute and "estimate: cpu_seconds x 12 W" in compute
    for name in ("pareto.png", "pareto.svg", "robustness.png", "study_accuracy.csv", "compute.csv"):
        assert (out / name).is_file(), name


def test_compare_two_sweeps(tmp_path):
    a = write_sweep(tmp_path / "a", STANDARD_ROWS)
    b = write_sweep(tmp_path / "b", STANDARD_ROWS[:3])
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp.png")]) == 0
    summary = {s["sweep"]: s for s in json.loads((tmp_path / "cmp.json").read_text())["sweeps"]}
    assert summary["a"]["hypervolume"] == pytest.approx(0.5 + 0.4 * (math.log10(20) - 1))
    assert summary["b"]["hypervolume"] == pytest.approx(0.02) and summary["b"]["n_finished"] == 3
    assert (tmp_path / "cmp.svg").is_file() and (tmp_path / "cmp.csv").is_file()


@pytest.mark.slow  # a fresh interpreter imports torch: several seconds
def test_runs_as_a_script(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", STANDARD_ROWS)
    r = subprocess.run([sys.executable, "-m", "analysis", "pareto", str(sweep), "--out", str(tmp_path / "f.csv")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f.png").is_file()
