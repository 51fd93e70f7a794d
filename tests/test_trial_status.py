"""The table of statuses and flags (rcsweep.trial_status): the degeneracy rule with the values the
committed FashionMNIST study showed, flag derivation from a record, and what each flag keeps off
the front and out of the cell means."""
import pandas as pd
import pytest

from analysis.common import load_sweep, split_usable
from analysis.pareto import pareto_analysis
from analysis.report import write_report
from analysis.tables import accuracy_long
from rcsweep import TrialConfig, run_trial
from rcsweep.results import record_to_row, upsert_rows
from rcsweep.trial_status import FLAGS, STATUSES, binomial_upper, degeneracy, derive_flags, exclusion

from analysis_helpers import STANDARD_ROWS, record, write_sweep


def test_every_status_and_flag_has_a_rule_for_front_cells_and_sampler():
    assert set(STATUSES) == {"running", "finished", "failed", "early_stopped"}
    assert {"suspect", "degenerate", "collapsed", "infeasible", "invalid", "weak_eval"} <= set(FLAGS)
    for rule in [*STATUSES.values(), *FLAGS.values()]:
        assert rule.sampler in ("objectives", "failed", "pruned", "infeasible", "pending", "not told")
    assert "stopped" not in STATUSES  # the driver's state, not a trial's


@pytest.mark.parametrize("clean, n, majority, pred, degenerate", [
    (0.094, 500, None, None, True),    # fmnist 5ab03997: a constant classifier at 9.4% (below chance)
    (0.126, 500, None, None, True),    # at the upper end of chance's 95% interval on 500 images
    (0.127, 500, None, None, False),
    (0.130, 500, 0.130, None, True),   # fmnist 0e0783a3: one class, 13% of the first 500 test images
    (0.159, 500, 0.130, None, True),
    (0.170, 500, 0.130, None, False),
    (0.600, 500, 0.130, 1.0, True),    # a single predicted class, whatever the labels
    (0.840, 1000, 0.1, 0.2, False),
    (0.550, 100, None, None, False),  # 2 classes would be at chance; 10 are not
])
def test_degeneracy(clean, n, majority, pred, degenerate):
    assert bool(degeneracy(clean, n, 10, majority, pred)) is degenerate


def test_binomial_upper_bound_value():
    assert binomial_upper(0.1, 500) == pytest.approx(0.1 + 1.959964 * (0.09 / 500) ** 0.5)
    assert degeneracy(0.55, 100, 2)  # 2 classes: 0.55 is inside 0.5 +- 0.098


def test_derive_flags_joins_checks_verification_and_degeneracy():
    rec = {"metrics": {"clean_acc": 0.095, "robust_acc": 0.09, "flags": "collapsed"},
           "evaluation": {"n_test": 500, "checks": {"large_eps": {"passed": False, "detail": "0.3 at eps 0.5"},
                                                    "gradient": {"passed": True, "detail": "ok"}}},
           "verification": {"suspect": True, "suspect_reason": "rcsweep 0.4 vs independent 0.3",
                            "robust_acc_independent": 0.3}}
    m = derive_flags(rec, 10)["metrics"]
    assert m["suspect"] and m["suspect_reason"] == "large_eps: 0.3 at eps 0.5; verify: rcsweep 0.4 vs independent 0.3"
    assert m["degenerate"] and "chance 0.100" in m["degenerate_reason"]
    assert m["verified_robust_acc"] == 0.3
    assert m["flags"] == "suspect;degenerate;collapsed"
    rec["metrics"]["clean_acc"], rec["verification"] = 0.9, {}
    rec["evaluation"]["checks"]["large_eps"]["passed"] = True
    m = derive_flags(rec, 10)["metrics"]
    assert not m["suspect"] and not m["degenerate"] and m["flags"] == "collapsed"


def test_flagged_rows_stay_off_the_front_and_out_of_cell_means(tmp_path):
    rows = STANDARD_ROWS + [
        # a degenerate model that would dominate the front on size (constant classifier, tiny)
        ("t09", "finished", dict(compression="prune", sparsity=0.99, bits=800, clean=0.094, robust=0.094)),
    ]
    write_sweep(tmp_path, rows)
    df = load_sweep(tmp_path)
    # the writer's flags: derive them as a trial would (n_test 500, 10 classes)
    recs = []
    for tid, status, kw in rows:
        if status == "finished":
            rec = record(**kw)
            rec["evaluation"] = {"n_test": 500, "checks": {}}
            if kw.get("suspect"):
                rec["evaluation"]["checks"] = {"large_eps": {"passed": False, "detail": kw["reason"]}}
            recs.append(record_to_row(tid, status, derive_flags(rec, 10)))
    upsert_rows(tmp_path, recs)
    df = load_sweep(tmp_path).set_index("trial_id", drop=False)
    assert df.loc["t09", "degenerate"] and df.loc["t09", "flags"] == "degenerate"
    assert df.loc["t06", "flags"] == "suspect"
    usable, excluded = split_usable(df, ["robust_acc"], use="cell")
    assert {"t06", "t09"} <= set(excluded["trial_id"]) and not {"t06", "t09"} & set(usable["trial_id"])
    assert excluded.set_index("trial_id").loc["t09", "reason"].startswith("degenerate: clean accuracy 0.094")
    front = pareto_analysis(df.reset_index(drop=True), "robust_acc:max,model_bits:min").front
    assert "t09" not in set(front["trial_id"]) and "t06" not in set(front["trial_id"])
    long = accuracy_long(usable, pd.Series(500.0, index=usable.index))
    assert long["n_seeds"].sum() == 2 * len(usable)  # clean and robust cells; t06/t09 counted in none
    assert not {"t06", "t09"} & {t for ids in long["trial_ids"] for t in ids}
    text = write_report(tmp_path).read_text()
    assert "left out: 2 trials (1 suspect, 1 degenerate)" in text
    assert "| t09 |" in text.split("## Flagged trials")[1].split("##")[0]


def test_exclusion_reasons_name_the_status_or_flag():
    assert exclusion({"status": "failed", "error": "boom"}) == "failed: boom"
    assert exclusion({"status": "early_stopped"}) == "early_stopped: not finished"
    assert exclusion({"status": "finished", "flags": "weak_eval"}) == ""  # kept, said in the report
    assert exclusion({"status": "finished", "flags": "infeasible"}).startswith("infeasible")
    assert exclusion({"status": "finished", "suspect": "True", "suspect_reason": "x"}) == "suspect: x"
    assert exclusion({"status": "weird"}).startswith("unknown status")


def test_an_untrained_pruned_model_without_finetuning_is_flagged_degenerate(tmp_path):
    """Every route is checked, also compression without fine-tuning (never checked for collapse)."""
    rec = run_trial(TrialConfig(dataset="digits", pretrain_epochs=0, compression="prune_structured", sparsity=0.5,
                                eval_steps=2, eval_restarts=1, test_size=120), tmp_path, device="cpu")
    m = rec["metrics"]
    assert m["degenerate"] and "degenerate" in m["flags"].split(";"), m
    assert rec["evaluation"]["n_test"] == 120 and rec["evaluation"]["num_classes"] == 10
    assert 0 < m["majority_pred_frac"] <= 1


def test_one_configuration_counts_once_on_the_front_and_in_cell_means(tmp_path):
    from analysis_helpers import DENSE_BITS

    t03 = dict(compression="prune", sparsity=0.9, finetune="adversarial", bits=DENSE_BITS // 10)
    rows = STANDARD_ROWS + [
        ("t10", "finished", dict(t03, clean=0.91, robust=0.55)),  # t03 again: better numbers, still a repeat
        ("t11", "finished", dict(t03, seed=1, clean=0.91, robust=0.55)),  # another seed: its own trial
        ("t12", "finished", dict(clean=0.96, robust=0.06)),  # the reference t00 again
        ("t13", "finished", dict(pretrain="adversarial", seed=1, clean=0.92, robust=0.58)),  # t01 at seed 1
        ("t14", "finished", dict(compression="prune", sparsity=0.99, finetune="adversarial", bits=DENSE_BITS // 100,
                                 clean=0.80, robust=0.30)),  # t06's configuration, but t06 is suspect
        ("t15", "finished", dict(compression="prune", sparsity=0.8)),  # t07's configuration, but t07 failed
    ]
    df = load_sweep(write_sweep(tmp_path, rows))
    for use in ("front", "cell"):
        usable, excluded = split_usable(df, ["robust_acc"], use=use)
        reasons = excluded.set_index("trial_id")["reason"]
        assert reasons["t10"] == "repeat: same configuration as t03"
        assert reasons["t12"] == "repeat: same configuration as t00"
        assert {"t00", "t01", "t03", "t11", "t13", "t14", "t15"} <= set(usable["trial_id"])
        assert not {"t10", "t12"} & set(usable["trial_id"])
    front = pareto_analysis(df, "robust_acc:max,model_bits:min").front
    assert "t10" not in set(front["trial_id"]) and "t11" in set(front["trial_id"])
    text = write_report(tmp_path).read_text()
    assert "left out: 3 trials (1 suspect, 2 repeat)" in text
    flagged = text.split("## Flagged trials")[1].split("##")[0]
    assert "| t10 |" in flagged and "repeat: same configuration as t03" in flagged


def test_a_row_rebuilt_from_its_record_keeps_what_only_the_sweep_knew():
    from rcsweep.trial_status import keep_row_only

    old = {"flags": "suspect;infeasible", "infeasible_reason": "model_bits 2e+05 > 1e+05", "suspect_reason": "x"}
    new = keep_row_only({"flags": "degenerate", "suspect_reason": ""}, old)
    assert new["flags"] == "degenerate;infeasible" and new["infeasible_reason"] == "model_bits 2e+05 > 1e+05"
    assert new["suspect_reason"] == ""  # the record's own flags come from the record
    assert "infeasible_reason" not in keep_row_only({"flags": ""}, {"flags": "", "infeasible_reason": "stale"})


def test_the_report_counts_one_trial_in_the_singular():
    from analysis.report import _trials

    assert (_trials(1), _trials(0), _trials(2)) == ("1 trial", "0 trials", "2 trials")


def test_the_report_lists_each_early_stopped_trial_with_its_rung_and_reason():
    from analysis.report import _stopped_md

    df = pd.DataFrame({"trial_id": ["a", "b"], "status": ["early_stopped", "finished"], "pretrain": ["standard"] * 2,
                       "compression": ["quant", "quant"], "finetune": ["clean", "adversarial"],
                       "finetune_epochs": [3, 3], "screen_rung": [1, 3], "screen_clean_acc": [0.9, 0.9],
                       "screen_robust_acc": [0.02, 0.4], "flops_screen": [1.0, 2.0],
                       "early_stopped_reason": ["place 4 of 4 (front 2), below the top 1", None]})
    md = "\n".join(_stopped_md(df))
    assert md.startswith("## Stopped early") and "1 stopped early (rung 1: 1): 2 fine-tuning epochs" in md
    row = next(line for line in md.splitlines() if line.startswith("| a "))
    assert "| 1 |" in row and "place 4 of 4 (front 2), below the top 1" in row
    assert "| b " not in md
    assert _stopped_md(df.assign(status="finished")) == []


def test_the_compression_curves_figure_has_no_column_for_an_axis_the_sweep_did_not_vary(tmp_path):
    # a pruning-only sweep's weight-bits "curve" is the dense model alone: no column for it
    import matplotlib.pyplot as plt

    from analysis.curve_plots import plot_compression_curves

    rows = [{"axis": "sparsity", "metric": m, "route": "adv -> adv", "x": x, "mean": 0.5, "std": 0.0}
            for m in ("clean_acc", "robust_acc") for x in (0.0, 0.25, 0.5)]
    rows += [{"axis": "weight_bits", "metric": m, "route": "adv -> adv", "x": 32.0, "mean": 0.5, "std": 0.0}
             for m in ("clean_acc", "robust_acc")]
    seen = []
    real_save = plt.Figure.savefig
    try:
        plt.Figure.savefig = lambda fig, *a, **k: (seen.append(len(fig.axes)), real_save(fig, *a, **k))[1]
        plot_compression_curves(pd.DataFrame(rows), tmp_path / "curves")
    finally:
        plt.Figure.savefig = real_save
    assert seen and set(seen) == {2}  # 2 rows x 1 column


def test_the_report_describes_only_the_curves_it_draws(tmp_path):
    # a pruning-only sweep without references, one seed: no weight-bits axis, no band, no dense point
    from analysis.report import write_report
    from rcsweep.results import record_to_row, upsert_rows

    rows = []
    for i, (pre, ft, s) in enumerate([("adversarial", "adversarial", 0.25), ("adversarial", "adversarial", 0.5),
                                      ("adversarial", "none", 0.25), ("adversarial", "none", 0.5),
                                      ("standard", "none", 0.25), ("standard", "none", 0.5)]):
        rec = {"params": {"dataset": "digits", "pretrain": pre, "finetune": ft, "compression": "prune_structured",
                          "sparsity": s, "seed": 0, "eps_eval": 0.2},
               "metrics": {"clean_acc": 0.9, "robust_acc": 0.5 - s / 2 if pre == "adversarial" else 0.01,
                           "model_bits": 1e5 * (1 - s), "dense_model_bits": 1e5},
               "evaluation": {"n_test": 360, "checks": {}}}
        rows.append(record_to_row(f"t{i}", "finished", rec))
    upsert_rows(tmp_path, rows)
    text = write_report(tmp_path).read_text()
    section = text.split("## Accuracy against compression")[1].split("##")[0]
    assert "against structured sparsity, one line per training route, one seed (no band)" in section
    assert "weight bits" not in section and "dense model" not in section
    assert "adversarial pretrain, no FT" in text and "none FT" not in text
