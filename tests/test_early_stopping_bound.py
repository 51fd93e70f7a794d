"""The bound on what early stopping could save (benchmarks/early_stopping_bound.py): a set of trials
whose exclusive hypervolume contributions exceed the slack can never be dropped, and the compute a
droppable set may hold is the fractional knapsack's."""
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from early_stopping_bound import droppable  # noqa: E402

OBJ = [("robust_acc", "max"), ("clean_acc", "max")]  # both on [0, 1]: the gains are the values


def table(rows):
    return pd.DataFrame([{"trial_id": t, "robust_acc": r, "clean_acc": c, "flops_finetune": f, "flops_pretrain": 0.0,
                          "is_reference": False, "dataset": "digits", "pretrain": "standard"}
                         for t, r, c, f in rows])


def test_only_trials_whose_exclusive_contributions_fit_in_the_slack_are_dropped():
    # a (0.9, 0.1), b (0.5, 0.5), c (0.1, 0.9): hypervolume 0.33, exclusive areas 0.04, 0.16, 0.04;
    # compute per unit of exclusive area: a 2500, b 62.5, c 25 (dropped in that order)
    t = table([("a", 0.9, 0.1, 100.0), ("b", 0.5, 0.5, 10.0), ("c", 0.1, 0.9, 1.0)])
    assert droppable(t, t, OBJ, {}, "flops", slack=0.0) == 0.0
    assert droppable(t, t, OBJ, {}, "flops", slack=0.04 / 0.33) == pytest.approx(100.0)
    # 0.02 more: an eighth of b's exclusive area, an eighth of its compute (the fractional bound)
    assert droppable(t, t, OBJ, {}, "flops", slack=0.06 / 0.33) == pytest.approx(101.25)
    assert droppable(t, t, OBJ, {}, "flops", slack=1.0) == pytest.approx(111.0)
    # a reference is never dropped: the same slack goes to a quarter of b
    ref = t.assign(is_reference=[True, False, False])
    assert droppable(ref, ref, OBJ, {}, "flops", slack=0.04 / 0.33) == pytest.approx(2.5)


def _rung(rung, robust, clean=0.95, bits=100.0):
    return {"rung": rung, "clean_acc": clean, "robust_acc": robust, "n": 512,
            "values": {"robust_acc": robust, "model_bits": bits}}


def test_the_rung_floor_stops_a_trial_where_a_point_of_its_group_dominates_it_beyond_the_margin():
    from early_stopping_bound import rung_floor, rung_stops

    def row(t, compression, finetune, history, ft):
        return {"trial_id": t, "status": "finished", "is_reference": False, "dataset": "digits", "pretrain": "standard",
                "compression": compression, "finetune": finetune, "finetune_epochs": 2 if finetune != "none" else None,
                "screen_history": history, "flops_pretrain": 0.0, "flops_finetune": ft, "flops_evaluate": 50.0}

    t = pd.DataFrame([
        row("a", "prune_structured", "adversarial", [_rung(0, 0.60), _rung(1, 0.60), _rung(2, 0.61)], 100.0),
        # 0.02 behind a at rung 0 (within two standard errors of the difference, ~0.06), 0.30 at rung 1
        row("b", "prune_structured", "adversarial", [_rung(0, 0.58), _rung(1, 0.30), _rung(2, 0.31)], 100.0),
        # far behind a, but quantized: another rung group, never compared with a
        row("c", "quant", "adversarial", [_rung(0, 0.10), _rung(1, 0.12), _rung(2, 0.15)], 100.0),
        row("d", "prune_structured", "none", [_rung(0, 0.0, clean=0.1)], 0.0),  # chance: degenerate
    ])
    obj = [("robust_acc", "max"), ("model_bits", "min")]
    assert rung_stops(t, obj, [0, 1, 2], 2.0) == {"b": 1, "d": 0}
    # a 150, b half its fine-tuning (50), c 150, d nothing, of 500 without early stopping
    assert rung_floor(t, obj, [0, 1, 2], 2.0) == pytest.approx(350 / 500)
    assert rung_stops(t, obj, [0, 2], 2.0) == {"b": 2, "d": 0}  # no rung 1: b runs its fine-tuning
    assert rung_stops(t, obj, [0, 1, 2], 0.0) == {"b": 0, "d": 0}  # no margin: b is behind a at rung 0
    assert rung_floor(t, obj, [0, 1, 2], 0.0) == pytest.approx(300 / 500)
    assert rung_stops(t, obj, [0, 1, 2], 2.0, group=lambda r: "all") == {"b": 1, "c": 0, "d": 0}
