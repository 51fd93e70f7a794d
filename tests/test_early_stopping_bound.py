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
