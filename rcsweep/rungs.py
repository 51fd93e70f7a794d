"""The rung decision of multi-objective early stopping (issue 16), as pure functions of points.

Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel Hyperparameter
Tuning", ASHA) with several objectives ranked by non-dominated sorting at each rung, as Schmucker
et al. (2021, "Multi-objective Asynchronous Successive Halving") and Syne Tune's ``MOASHA`` do. What
is added here, for noisy screening accuracies: a statistical margin in the dominance, a first front
that is never stopped, and degenerate models stopped at once.

:func:`decide` is asked once per trial per rung, when the trial reaches it, with every point the
rung has had so far (the trial's own included); its answer is final (a trial that continued is
never stopped later at that rung). In order:

1. **Degenerate**: a trial whose screening clean accuracy is within the 95% binomial interval of
   chance (:func:`rcsweep.trial_status.degeneracy`) is stopped at once, whatever the rung holds.
2. **Too few points**: with fewer than ``eta + 1`` points the rung does not decide; the trial
   continues (as in ASHA, where the first trials at a rung are promoted while it fills).
3. **Margin dominance**: ``a`` dominates ``b`` when ``a`` is at least as good in every objective and
   better in one, where in each screened accuracy ``a`` must beat ``b`` by more than
   ``margin_se`` standard errors of the difference, ``margin_se * sqrt(se_a^2 + se_b^2)``,
   ``se = sqrt(p (1 - p) / n)`` with ``p`` kept in ``[1/n, 1 - 1/n]`` (two observed zeros are not
   equal beyond doubt). Exact objectives (sizes, projected costs) take no margin.
4. **Non-dominated sorting** peels fronts under that dominance. A trial on the first front always
   continues. Otherwise it continues when it is among the top ``max(1, floor(points / eta))``
   points in front order.
5. **Ties** (the front that straddles the cut): ranked by NSGA-II's crowding distance within that
   front (Deb et al. 2002; objectives normalised to the front's range, sizes as log10, boundary
   points first), then by arrival (earlier first): the spread of the front is kept.

:func:`group_key` says which trials share a rung (the same compression method and total
epochs; fine-tuning methods pooled); :func:`rung_values` maps the sweep's objectives to their
values at a rung (:data:`rcsweep.metrics_table.AT_RUNG`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .metrics_table import AT_RUNG, missing
from .pareto import LOG_COLUMNS
from .trial_status import degeneracy


TOO_FEW = "points it needs to decide"  # the end of a decision that waited (rcsweep status counts them)


@dataclass(frozen=True)
class RungPoint:
    """One trial at one rung: ``values`` (objective -> its rung value, :func:`rung_values`),
    ``n`` screened images, ``clean_acc`` its screening clean accuracy (a fraction)."""
    trial_id: str
    values: dict
    n: int
    clean_acc: float


@dataclass(frozen=True)
class Decision:
    """``stop``: whether the trial stops here; ``reason``: one line; ``front``: its front (1-based;
    0 when the rung did not rank it)."""
    stop: bool
    reason: str
    front: int = 0


def group_key(params: dict) -> str:
    """The trials whose points a rung compares (``params``: a flat trial configuration): the same
    compression method and ``finetune_epochs``; fine-tuning methods share a rung.

    - **Compression method**: methods damage a model differently before fine-tuning repairs it
      (structured pruning at 0.5 loses most of a digits model's robust accuracy, 8-bit quantization
      almost none, and 9 epochs of adversarial fine-tuning bring both to the front), so a rung's
      early look ranks trials of one method against each other, not across methods. Measured: the
      early-stopping benchmark (docs/results/early-stopping) with every compression in one rung
      stopped front models (pruning at 0.5 and 0.7 with adversarial fine-tuning, at rung 0) in 3 of
      3 seeds; pooling them only from rung 1 on stopped a front trial of the grid's 7 in 14 of
      20 replayed arrival orders.
    - **Total epochs**: a learning-rate schedule depends on the total, so epoch 1 of 3 is not epoch
      1 of 9; and where a cost that grows with the epochs is an objective, even rung 0 (before any
      fine-tuning, the same model for every total) would rank a 9-epoch trial below a 3-epoch one
      of the same compression by its projected cost alone, blind to what the epochs buy (pooling
      rung 0 across totals stopped 2 to 5 front trials per continuous sweep in a replay).
    - **Fine-tuning methods are pooled**: at rung 0 every method holds the same compressed model,
      and at later rungs they run the same schedule over the same total, so where one is behind
      another in every objective it is a worse route, not an earlier one (clean fine-tuning erodes
      robust accuracy as it goes). A cost objective keeps a cheaper method from being dominated by
      a costlier one. Measured on the recorded grid of the 54-point space (20 random arrival
      orders): 0 of its 7 front trials stopped, and the sweep's compute fell from 0.96x to 0.83x of
      the grid's without early stopping (methods in separate rungs filled them too slowly to decide).

    Key: ``"prune_structured/3"``."""
    epochs = params.get("finetune_epochs")
    epochs = 0 if missing(epochs) else int(epochs)
    return f"{params.get('compression', 'none')}/{epochs}"


def rung_values(objectives, screened: dict, measured: dict) -> dict:
    """Objective -> its value at a rung (:data:`rcsweep.metrics_table.AT_RUNG`). ``objectives``:
    ``(metric, direction)`` pairs; ``screened``: a :func:`rcsweep.screening.screen` result;
    ``measured``: the compressed model's sizes and the projected costs, by metric name."""
    have = {**measured, "screen_clean_acc": screened["clean_acc"], "screen_robust_acc": screened["robust_acc"]}
    return {m: float(have[AT_RUNG[m][1]]) for m, _ in objectives}


def rung_point_of(trial_id: str, values: dict, screened: dict) -> RungPoint:
    """A trial's point from its rung ``values`` and its screening there (:func:`rcsweep.screening.screen`'s result)."""
    return RungPoint(trial_id, values, int(screened["n"]), float(screened["clean_acc"]))


def _se(p: float, n: int) -> float:
    n = max(int(n), 1)
    p = min(max(p, 1.0 / n), 1.0 - 1.0 / n) if n > 1 else 0.5
    return math.sqrt(p * (1 - p) / n)


def dominates(a: RungPoint, b: RungPoint, objectives, margin_se: float) -> bool:
    """Whether ``a`` dominates ``b`` beyond the margin (module docstring, step 3)."""
    better = False
    for m, d in objectives:
        diff = (a.values[m] - b.values[m]) * (1.0 if d == "max" else -1.0)  # a's gain over b
        if AT_RUNG[m][0] == "screen" and margin_se > 0:
            if diff <= margin_se * math.hypot(_se(a.values[m], a.n), _se(b.values[m], b.n)):
                return False
            better = True
        elif diff < 0:
            return False
        else:
            better = better or diff > 0
    return better


def fronts(points: list[RungPoint], objectives, margin_se: float) -> list[list[int]]:
    """Non-dominated sorting of ``points`` under :func:`dominates`: lists of positions, best front first."""
    left, out = list(range(len(points))), []
    while left:
        front = [i for i in left if not any(dominates(points[j], points[i], objectives, margin_se) for j in left if j != i)]
        out.append(front)
        left = [i for i in left if i not in front]
    return out


def crowding(points: list[RungPoint], front: list[int], objectives) -> dict:
    """NSGA-II crowding distance of each position in ``front`` (boundary points: inf)."""
    dist = {i: 0.0 for i in front}
    for m, _ in objectives:
        v = {i: (math.log10(points[i].values[m]) if m in LOG_COLUMNS and points[i].values[m] > 0
                 else points[i].values[m]) for i in front}
        order = sorted(front, key=lambda i: v[i])
        span = v[order[-1]] - v[order[0]]
        dist[order[0]] = dist[order[-1]] = math.inf
        for k in range(1, len(order) - 1):
            if span > 0:
                dist[order[k]] += (v[order[k + 1]] - v[order[k - 1]]) / span
    return dist


def ranking(points: list[RungPoint], objectives, margin_se: float) -> list[tuple[int, int]]:
    """``(position, front)`` for every point, best first: fronts in order, ties by crowding distance
    (larger first), then arrival (earlier first)."""
    out = []
    for f, front in enumerate(fronts(points, objectives, margin_se), start=1):
        dist = crowding(points, front, objectives)
        out += [(i, f) for i in sorted(front, key=lambda i: (-dist[i], i))]
    return out


def decide(points: list[RungPoint], trial_id: str, objectives, *, eta: int, margin_se: float,
           num_classes: int) -> Decision:
    """Whether ``trial_id`` stops at this rung (module docstring). ``points``: the rung's points in
    arrival order, the trial's own included; ``objectives``: the sweep's ``(metric, direction)``
    pairs; ``eta`` >= 2; ``margin_se`` >= 0 standard errors; ``num_classes``: chance is 1/num_classes.
    Raises ValueError when ``trial_id`` has no point."""
    pos = next((i for i, p in enumerate(points) if p.trial_id == trial_id), None)
    if pos is None:
        raise ValueError(f"trial {trial_id} has no point at this rung")
    me = points[pos]
    why = degeneracy(me.clean_acc, me.n, num_classes)
    if why:
        return Decision(True, f"degenerate: {why}")
    if len(points) < eta + 1:
        return Decision(False, f"rung has {len(points)} of the {eta + 1} {TOO_FEW}")
    keep = max(1, len(points) // eta)
    order = ranking(points, objectives, margin_se)
    place, front = next((k, f) for k, (i, f) in enumerate(order) if i == pos)
    if front == 1:
        return Decision(False, f"on the first front of {len(points)} points", front)
    if place < keep:
        return Decision(False, f"place {place + 1} of {len(points)} (front {front}), within the top {keep}", front)
    return Decision(True, f"place {place + 1} of {len(points)} (front {front}), below the top {keep} "
                          f"(1/{eta} of the rung)", front)



def stopped_summary(table) -> str:
    """One line on a results table's (``rcsweep.results.load_results``) early-stopped trials: how
    many at which rung, and the work they skipped (fine-tuning epochs past their rung, final
    evaluations) and spent screening (FLOPs, over every screened trial); '' when none stopped.
    Example: ``'3 stopped early (rung 0: 2, rung 1: 1): 17 fine-tuning epochs and 3 final
    evaluations skipped; screening cost 1.2e+09 FLOPs'``."""
    if table is None or "status" not in table:
        return ""
    rows = table[table["status"] == "early_stopped"]
    if rows.empty:
        return ""
    rungs = rows["screen_rung"].fillna(0).astype(int) if "screen_rung" in rows else rows["status"].map(lambda _: 0)
    by = ", ".join(f"rung {r}: {n}" for r, n in sorted(rungs.value_counts().items()))
    total = rows["finetune_epochs"].fillna(0) if "finetune_epochs" in rows else 0 * rungs
    skipped = int((total - rungs).clip(lower=0).sum())
    cost = float(table["flops_screen"].fillna(0).sum()) if "flops_screen" in table else 0.0
    return (f"{len(rows)} stopped early ({by}): {_count(skipped, 'fine-tuning epoch')} and "
            f"{_count(len(rows), 'final evaluation')} skipped; screening cost {cost:.3g} FLOPs")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
