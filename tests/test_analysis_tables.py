"""The study's tables: aggregation over seeds, confidence intervals, robustness curves, compute."""
import math

import pytest
from analysis_helpers import DENSE_BITS, STANDARD_ROWS, write_sweep

from analysis.common import load_sweep, n_test, split_usable
from analysis.tables import (accuracy_long, compute_table, label_rows, recovery_table, robustness_curves, study_table,
                             suspect_rows, wilson_interval)

ROWS = [
    ("s0", "finished", dict(seed=0, clean=0.90, robust=0.10, test_size=200, curve={"0.05": 0.5})),
    ("s1", "finished", dict(seed=1, clean=0.94, robust=0.30, test_size=200, curve={"0.05": 0.7})),
    ("a0", "finished", dict(pretrain="adversarial", seed=0, clean=0.85, robust=0.55, test_size=200)),
    ("p0", "finished", dict(compression="prune", sparsity=0.5, finetune="adversarial", seed=0, clean=0.88,
                            robust=0.50, bits=DENSE_BITS // 2, test_size=200)),
    ("p1", "finished", dict(compression="prune", sparsity=0.5, finetune="adversarial", seed=1, clean=0.86,
                            robust=0.46, bits=DENSE_BITS // 2, test_size=200)),
    ("q0", "finished", dict(compression="prune", sparsity=0.5, seed=0, clean=0.80, robust=0.01, bits=DENSE_BITS // 2)),
]


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0.5, 1000)
    assert (lo, hi) == (pytest.approx(0.46907, abs=1e-5), pytest.approx(0.53093, abs=1e-5))  # about +-3 points
    lo, hi = wilson_interval(1.0, 100)
    assert hi == 1.0 and lo == pytest.approx(0.96301, abs=1e-5)
    assert all(math.isnan(v) for v in wilson_interval(0.5, math.nan))


@pytest.fixture
def sweep(tmp_path):
    return write_sweep(tmp_path, ROWS)


def test_accuracy_aggregates_seeds_with_spread_and_ci(sweep):
    df = load_sweep(sweep)
    usable, _ = split_usable(df)
    nt = n_test(sweep, usable)
    assert nt.tolist() == [200] * 5 + [360]  # test_size, else the digits test split
    long = accuracy_long(usable, nt).set_index(["row", "column", "metric"])
    dense = long.loc[("standard pretrain | none", "none", "robust_acc")]
    assert dense["mean"] == pytest.approx(0.2) and dense["std"] == pytest.approx(math.sqrt(0.02))
    assert dense["n_seeds"] == 2 and sorted(dense["trial_ids"]) == ["s0", "s1"]
    assert (dense["ci_low"], dense["ci_high"]) == pytest.approx(wilson_interval(0.2, 200))
    pruned = long.loc[("standard pretrain | prune 50%", "adversarial", "clean_acc")]
    assert pruned["mean"] == pytest.approx(0.87) and pruned["n_seeds"] == 2
    single = long.loc[("adversarial pretrain | none", "none", "robust_acc")]
    assert single["n_seeds"] == 1 and math.isnan(single["std"])
    no_ft = long.loc[("standard pretrain | prune 50%", "none", "robust_acc")]
    assert no_ft["n_test"] == 360 and (no_ft["ci_low"], no_ft["ci_high"]) == pytest.approx(wilson_interval(0.01, 360))

    table = study_table(accuracy_long(usable, nt), "robust_acc")
    assert list(table.index) == ["standard pretrain | none", "standard pretrain | prune 50%",
                                 "adversarial pretrain | none"]
    assert list(table.columns) == ["none", "adversarial"]
    assert table.loc["standard pretrain | none", "none"].startswith("20.0 ± 14.1 [")
    assert table.loc["adversarial pretrain | none", "adversarial"] == "–"


def test_other_varying_parameters_split_rows(tmp_path):
    rows = [("e1", "finished", dict(eps_eval=0.1)), ("e2", "finished", dict(eps_eval=0.2))]
    d = label_rows(load_sweep(write_sweep(tmp_path, rows)))
    assert d["row"].tolist() == ["standard pretrain | none | eps_eval=0.1", "standard pretrain | none | eps_eval=0.2"]


def test_robustness_curves(sweep):
    usable, _ = split_usable(load_sweep(sweep))
    c = robustness_curves(usable)
    dense = c[c["label"] == "standard pretrain, no FT, none"].set_index("eps")
    assert dense.index.tolist() == [0.0, 0.05, 0.1]
    assert dense["mean"].tolist() == pytest.approx([0.92, 0.6, 0.2])
    assert dense["n"].tolist() == [2, 2, 2]


def test_compute_table_relates_to_full_adversarial_training(sweep):
    usable, _ = split_usable(load_sweep(sweep))
    t = compute_table(usable).set_index("label")
    adv_ft = t.loc["standard pretrain, adversarial FT, prune 50%"]
    # standard pretraining (1e9) + adversarial fine-tuning (3.3e9) against dense adversarial training (11e9)
    assert adv_ft["train_flops"] == pytest.approx(4.3e9)
    assert adv_ft["flops_vs_full_adv"] == pytest.approx(4.3 / 11)
    assert t.loc["adversarial pretrain, no FT, none", "flops_vs_full_adv"] == pytest.approx(1.0)
    assert adv_ft["train_time_s"] == pytest.approx(10 + 0.1 + 33)
    # energy beside time and FLOPs (analysis_helpers: 1e-5 kWh per stage second), labelled with its source
    assert adv_ft["energy_kwh_finetune"] == pytest.approx(33e-5)
    assert adv_ft["train_energy_kwh"] == pytest.approx((10 + 0.1 + 33) * 1e-5)
    assert adv_ft["energy_source"] == "estimate: cpu_seconds x 12 W"


def test_recovery_table_shows_energy_beside_flops_and_time_labelled_as_an_estimate(tmp_path):
    from analysis.report import _recovery_md, energy_kind, energy_note

    prune = dict(compression="prune", sparsity=0.5, bits=DENSE_BITS // 2, test_size=200)
    rows = [("sa0", "finished", dict(finetune="adversarial", robust=0.40, **prune)),
            ("a0", "finished", dict(pretrain="adversarial", robust=0.50, **prune))]
    folder = write_sweep(tmp_path, rows)
    usable, _ = split_usable(load_sweep(folder))
    md = _recovery_md(recovery_table(usable, n_test(folder, usable)))
    header, _, row = md.splitlines()[:3]
    assert "AFT FLOPs / adv training" in header and "AFT energy / adv training (estimated)" in header
    assert row.endswith("| 0.300 | – | 0.300 |")  # 33 s of fine-tuning against 110 s of adversarial pretraining
    assert energy_kind("estimate: cpu_seconds x 12 W") == "estimated" and energy_kind("rapl") == "measured"
    assert energy_kind("rapl; estimate: cpu_seconds x 12 W") == "measured or estimated"
    assert "**estimate**" in energy_note("estimate: cpu_seconds x 12 W")


def test_suspect_rows_list_reasons(tmp_path):
    s = suspect_rows(load_sweep(write_sweep(tmp_path, STANDARD_ROWS)))
    assert s["trial_id"].tolist() == ["t06"] and "large_eps" in s["suspect_reason"].iloc[0]


def test_recovery_table_compares_adversarial_fine_tuning_with_adversarial_training(tmp_path):
    """Per compression level: std+AFT against adv (no fine-tuning), means over seeds, the share of adv's
    robust accuracy, and the fine-tuning's FLOPs and time against the adversarial pretraining's."""
    prune = dict(compression="prune", sparsity=0.5, bits=DENSE_BITS // 2, test_size=200)
    rows = [("sa0", "finished", dict(finetune="adversarial", seed=0, robust=0.40, **prune)),
            ("sa1", "finished", dict(finetune="adversarial", seed=1, robust=0.44, **prune)),
            ("s0", "finished", dict(seed=0, robust=0.02, **prune)),
            ("a0", "finished", dict(pretrain="adversarial", seed=0, robust=0.50, **prune)),
            ("a1", "finished", dict(pretrain="adversarial", seed=1, robust=0.54, **prune)),
            ("d0", "finished", dict(pretrain="adversarial", robust=0.6, test_size=200)),  # dense: no row
            ("q0", "finished", dict(compression="quant", weight_bits=4, finetune="adversarial", robust=0.3))]  # no adv
    folder = write_sweep(tmp_path, rows)
    usable, _ = split_usable(load_sweep(folder))
    secs = usable["trial_id"].map({"sa0": 10.0, "sa1": 12.0, "a0": 100.0, "a1": 120.0}).astype(float)
    r = recovery_table(usable, n_test(folder, usable), secs)
    assert r["compression_level"].tolist() == ["prune 50%"]
    row = r.iloc[0]
    assert row["n_seeds"] == 2
    assert row["robust std+AFT"] == pytest.approx(0.42) and row["robust adv"] == pytest.approx(0.52)
    assert row["robust std"] == pytest.approx(0.02) and math.isnan(row["robust adv+AFT"])
    assert (row["robust std+AFT ci_low"], row["robust std+AFT ci_high"]) == pytest.approx(wilson_interval(0.42, 200))
    assert row["share of adv robustness"] == pytest.approx(0.42 / 0.52)
    # analysis_helpers: adversarial fine-tuning 3.3e9 FLOPs and 33 s; adversarial pretraining 11e9 FLOPs
    assert row["AFT flops / adv training"] == pytest.approx(3.3e9 / 11e9)
    assert row["AFT time_s"] == pytest.approx(33.0) and row["adv training time_s"] == pytest.approx(110.0)
    assert row["AFT time / adv training"] == pytest.approx(0.3)
    assert row["std pretrain time_s"] == pytest.approx(11.0)
    assert row["AFT energy_kwh"] == pytest.approx(33e-5) and row["adv training energy_kwh"] == pytest.approx(110e-5)
    assert row["AFT energy / adv training"] == pytest.approx(0.3)
    assert row["energy_source"] == "estimate: cpu_seconds x 12 W"


def test_pretrain_seconds_sum_the_epochs_of_the_record(tmp_path):
    import json

    from analysis.common import pretrain_seconds

    folder = write_sweep(tmp_path, [("t0", "finished", {}), ("t1", "finished", {}), ("t2", "finished", {})])
    for tid, hist in (("t0", [{"seconds": 1.5}, {"seconds": 2.0}]), ("t1", [])):
        (folder / "trials" / tid).mkdir(parents=True)
        (folder / "trials" / tid / "record.json").write_text(json.dumps({"history": {"pretrain": hist}}))
    s = pretrain_seconds(folder, load_sweep(folder))
    assert s.iloc[0] == pytest.approx(3.5) and math.isnan(s.iloc[1]) and math.isnan(s.iloc[2])


def test_compression_curves_are_the_studys_figure_1(tmp_path):
    from analysis.common import split_usable
    from analysis.report import write_report
    from analysis.tables import compression_curves

    rows = []
    for seed, (c0, c5, c4) in enumerate([(0.80, 0.70, 0.78), (0.84, 0.74, 0.80)]):
        rows += [(f"d{seed}", "finished", dict(seed=seed, clean=c0, robust=0.1)),
                 (f"p{seed}", "finished", dict(seed=seed, compression="prune_structured", sparsity=0.5, clean=c5,
                                               robust=0.05)),
                 (f"q{seed}", "finished", dict(seed=seed, compression="quant", weight_bits=4, clean=c4, robust=0.08)),
                 (f"m{seed}", "finished", dict(seed=seed, compression="quant", weight_bits=4,
                                               quant_scheme="minmax_tensor", clean=0.1, robust=0.1))]
    usable, _ = split_usable(load_sweep(write_sweep(tmp_path, rows)))
    c = compression_curves(usable).set_index(["axis", "x", "metric"])
    assert c.loc[("sparsity", 0.0, "clean_acc"), "mean"] == pytest.approx(0.82)  # the dense model at 0
    assert c.loc[("sparsity", 0.5, "clean_acc"), "mean"] == pytest.approx(0.72)
    assert c.loc[("sparsity", 0.5, "clean_acc"), "std"] == pytest.approx(0.0283, abs=1e-3)
    assert c.loc[("weight_bits", 32.0, "robust_acc"), "n_seeds"] == 2
    assert c.loc[("weight_bits", 4.0, "clean_acc"), "mean"] == pytest.approx(0.79)  # minmax rows not mixed in
    assert set(c["route"]) == {"standard pretrain, no FT"}
    text = write_report(tmp_path).read_text()
    assert "![Accuracy against compression](compression_curves.png)" in text
    assert (tmp_path / "report" / "compression_curves.png").is_file()
    # no eps_curve: a "curve" would have two points; the report draws none rather than an unreadable one
    assert "## Robustness curves" not in text and not (tmp_path / "report" / "robustness.png").exists()
