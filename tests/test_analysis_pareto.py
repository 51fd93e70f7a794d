"""Pareto fronts, hypervolume and group fronts: the computed data, on known point sets."""
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_helpers import DENSE_BITS, STANDARD_ROWS, write_sweep

from analysis.common import load_sweep, split_usable
from analysis.pareto import group_fronts, hypervolume_curve, pareto_analysis, parse_objectives
from rcsweep.pareto import Objective, gains, hypervolume, non_dominated
from rcsweep.errors import UserError


def test_front_of_known_point_set():
    # maximise the first, minimise the second
    pts = np.array([[0.6, 10], [0.5, 1], [0.4, 0.5], [0.3, 1], [0.6, 20], [0.1, 0.5], [0.5, 1]])
    mask = non_dominated(pts, ["max", "min"])
    # [0.3,1] is dominated by [0.5,1]; [0.6,20] by [0.6,10]; [0.1,0.5] by [0.4,0.5]; equal points both stay
    assert mask.tolist() == [True, True, True, False, False, False, True]


def test_front_respects_directions_and_three_objectives():
    pts = np.array([[1, 1, 1], [2, 0, 0], [0, 2, 0], [0, 0, 2], [0.5, 0.5, 0.5]])
    assert non_dominated(pts, ["max"] * 3).tolist() == [True, True, True, True, False]
    assert non_dominated(pts, ["min"] * 3).tolist() == [False, True, True, True, True]


def test_hypervolume_of_known_sets():
    # unions of boxes [0, p] whose volume is known by hand (moocore computes it: rcsweep.pareto)
    assert hypervolume([[0.3], [0.7]]) == pytest.approx(0.7)
    assert hypervolume([[1, 3], [2, 2], [3, 1]]) == pytest.approx(6.0)  # 3 + 2 + 1 column by column
    assert hypervolume([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2]]) == pytest.approx(6.0)  # dominated, repeated
    assert hypervolume([[2, 3, 4]]) == pytest.approx(24.0)
    assert hypervolume([[1, 1, 1], [2, 0.5, 0.5]]) == pytest.approx(1 + 1 * 0.5 * 0.5)
    assert hypervolume([[3, 1, 1], [1, 3, 1], [1, 1, 3]]) == pytest.approx(3 * 3 - 3 * 1 + 1)  # pairs share 1
    assert hypervolume([[1, 2, 3, 4]]) == pytest.approx(24.0)
    assert hypervolume([[2, 1, 1, 1], [1, 2, 1, 1]]) == pytest.approx(2 + 2 - 1)
    assert hypervolume([[2, 2, 2, 2], [1, 1, 1, 3]]) == pytest.approx(16 + 3 - 1 * 1 * 1 * 2)
    assert hypervolume([[-1, 5]]) == 0.0  # below the reference point in one objective
    assert hypervolume([[2, 3], [-1, 5]]) == pytest.approx(6.0)  # clipped to [0, 5]: adds nothing
    assert hypervolume(np.zeros((0, 2))) == 0.0
    assert hypervolume([]) == 0.0


def _inclusion_exclusion(p):
    p = np.clip(p, 0, None)
    total = 0.0
    for k in range(1, len(p) + 1):
        for sub in itertools.combinations(p, k):
            total += (-1) ** (k + 1) * np.prod(np.min(sub, axis=0))
    return total


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_hypervolume_matches_inclusion_exclusion(k):
    rng = np.random.default_rng(k)
    for _ in range(5):
        p = rng.uniform(-0.2, 1, size=(7, k))  # some gains below the reference point, some points dominated
        assert hypervolume(p) == pytest.approx(_inclusion_exclusion(p), rel=1e-9)


def test_parse_objectives_and_errors():
    assert parse_objectives("robust_acc:max, model_bits:MIN") == [Objective("robust_acc", "max"),
                                                                  Objective("model_bits", "min")]
    for bad in ("robust_acc:max", "robust_acc:up,model_bits:min", "robust_acc,model_bits:min",
                "robust_acc:max,robust_acc:min"):
        with pytest.raises(UserError):
            parse_objectives(bad)


def test_default_normalisation_is_decades_below_dense(tmp_path):
    df = pd.DataFrame({"robust_acc": [0.6, 0.5], "model_bits": [DENSE_BITS, DENSE_BITS / 100],
                       "dense_model_bits": [DENSE_BITS, DENSE_BITS]})
    g = gains(df, parse_objectives("robust_acc:max,model_bits:min"))
    np.testing.assert_allclose(g, [[0.6, 0.0], [0.5, 2.0]], atol=1e-12)


def test_sweep_front_excludes_failed_running_and_suspect(tmp_path):
    df = load_sweep(write_sweep(tmp_path, STANDARD_ROWS))
    res = pareto_analysis(df, "robust_acc:max,model_bits:min")
    assert sorted(res.front["trial_id"]) == ["t01", "t03", "t05"]
    reasons = dict(zip(res.excluded["trial_id"], res.excluded["reason"]))
    assert set(reasons) == {"t06", "t07", "t08"}
    assert reasons["t06"].startswith("suspect: large_eps") and reasons["t07"].startswith("failed: boom")
    assert reasons["t08"].startswith("running")
    # t01 is at the dense size (gain 0); t03 at 1/10 (1 decade), t05 at 1/20
    assert res.hypervolume == pytest.approx(0.5 * 1 + 0.4 * (math.log10(20) - 1))
    assert sorted(res.references["trial_id"]) == ["t00", "t01"]


def test_group_fronts(tmp_path):
    df = load_sweep(write_sweep(tmp_path, STANDARD_ROWS))
    usable, _ = split_usable(df)
    fronts = group_fronts(usable, parse_objectives("robust_acc:max,model_bits:min"), "finetune")
    assert list(fronts) == ["adversarial", "clean", "none"]
    assert sorted(fronts["adversarial"]["trial_id"]) == ["t03", "t05"]
    assert list(fronts["clean"]["trial_id"]) == ["t04"]
    assert sorted(fronts["none"]["trial_id"]) == ["t01", "t02"]
    res = pareto_analysis(df, "robust_acc:max,model_bits:min", by="finetune")
    assert res.group_hypervolume["none"] == pytest.approx(0.02 * 1)


def test_hypervolume_curve_grows_with_finished_trials(tmp_path):
    df = load_sweep(write_sweep(tmp_path, STANDARD_ROWS))
    curve = hypervolume_curve(df, parse_objectives("robust_acc:max,model_bits:min"))
    assert curve["n_finished"].tolist() == list(range(1, 8))  # 7 finished rows, one of them suspect
    hv = curve["hypervolume"].to_numpy()
    assert (np.diff(hv) >= 0).all() and hv[0] == 0.0 and hv[2] == pytest.approx(0.02)
    assert hv[-1] == pytest.approx(pareto_analysis(df, "robust_acc:max,model_bits:min").hypervolume)


def test_bad_objective_column_and_empty_sweep(tmp_path):
    df = load_sweep(write_sweep(tmp_path / "a", STANDARD_ROWS))
    with pytest.raises(UserError, match="robust_ac.*did you mean 'robust_acc'"):
        pareto_analysis(df, "robust_ac:max,model_bits:min")
    with pytest.raises(UserError, match="not a numeric"):
        pareto_analysis(df, "robust_acc:max,pretrain:min")
    empty = load_sweep(write_sweep(tmp_path / "b", [r for r in STANDARD_ROWS if r[1] != "finished"]))
    with pytest.raises(UserError, match="no usable finished trials"):
        pareto_analysis(empty, "robust_acc:max,model_bits:min")


def test_three_objectives_are_drawn_as_one_panel_per_pair(tmp_path, monkeypatch):
    from analysis import plots
    from rcsweep.pareto import objective_pairs
    from analysis.report import write_report

    write_sweep(tmp_path, STANDARD_ROWS)  # records without flops_route: derived from its parts when read
    objectives = "robust_acc:max,model_bits:min,flops_route:min"
    assert [(y.column, x.column) for y, x in objective_pairs(parse_objectives(objectives))] == [
        ("robust_acc", "model_bits"), ("robust_acc", "flops_route"), ("model_bits", "flops_route")]
    drawn, save = [], plots.save

    def keep(fig, stem):
        drawn.append((Path(stem).name, [ax for ax in fig.axes if ax.get_visible()]))
        return save(fig, stem)

    monkeypatch.setattr(plots, "save", keep)
    md = write_report(tmp_path, objectives=objectives).read_text()
    panels = dict(drawn)["pareto"]
    assert len(panels) == 3
    assert [(ax.get_ylabel(), ax.get_xlabel()) for ax in panels][2] == (
        "model size (bits), log scale", "route training compute (FLOPs), log scale")
    front = set(pareto_analysis(load_sweep(tmp_path), objectives).front["trial_id"])
    for ax in panels:  # the front's points over all three objectives are highlighted in every panel
        on_front = [c for c in ax.collections if c.get_label().startswith("on the front")]
        assert sum(len(c.get_offsets()) for c in on_front) == len(front) == 6
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 0 and "one panel per pair" in md
