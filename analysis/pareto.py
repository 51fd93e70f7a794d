"""Pareto fronts and hypervolume of a sweep (compute only; :mod:`analysis.plots` draws them).

Objectives are ``column:direction`` pairs (``robust_acc:max,model_bits:min``); any two or more
numeric columns of ``results.csv`` can be used. Only finished, non-suspect rows count; the others
come back in ``excluded`` with the reason.

Hypervolume normalisation (fixed, so that sweeps are comparable). Each objective value ``v`` is
mapped to a gain ``g`` (larger is better, reference point at ``g = 0``, negative gains clipped):

- columns in [0, 1] (accuracies, ``sparsity_measured``): ``g = v`` for max, ``1 - v`` for min;
  the reference point is the worst end of [0, 1] (robust accuracy 0);
- ``model_bits``: ``g = -log10(model_bits / dense_model_bits)``, the decades by which the model is
  smaller than the same network dense in float32; the reference point is the dense model's size;
- other sizes (``params``, ``params_nonzero``, ``macs``, ``bops``): ``g = -log10(v / v_ref)``
  (max: ``log10(v / v_ref)``), ``v_ref`` the largest value among the rows analysed together;
- any other non-negative column: ``g = 1 - v / v_ref`` for min, ``v / v_ref`` for max, ``v_ref``
  as above. Only these last two kinds depend on the rows: hypervolumes of such objectives are
  comparable between sweeps analysed together (``rcsweep compare``), not across separate calls.

For the default objectives the hypervolume is in (accuracy x decades of size reduction): a model
with robust accuracy 0.6 at 1/10 of the dense size alone gives 0.6. The hypervolume itself is
computed exactly by slicing along the last objective (small fronts; written here because the
libraries that have one keep it private).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from rcsweep import metrics_table
from rcsweep.errors import UserError

from .common import check_column, is_reference, split_usable

DIRECTIONS = ("max", "min")
DEFAULT_OBJECTIVES = ",".join(f"{m}:{d}" for m, d in metrics_table.DEFAULT_OBJECTIVES)
# the normalisation of each metric comes from the metric table (rcsweep.metrics_table, ``scale``)
UNIT_COLUMNS = tuple(m.name for m in metrics_table.METRICS if m.unit == "fraction" and m.kind == "float")
LOG_COLUMNS = tuple(m.name for m in metrics_table.METRICS if m.scale in ("log_ref", "log_dense"))


@dataclass(frozen=True)
class Objective:
    column: str
    direction: str  # max | min

    def __str__(self):
        return f"{self.column}:{self.direction}"


def parse_objectives(spec) -> list[Objective]:
    """``'robust_acc:max,model_bits:min'`` (or a list of such strings / pairs) -> Objectives."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        col, _, direction = item.strip().partition(":") if isinstance(item, str) else (item[0], ":", item[1])
        direction = direction.strip().lower()
        if not col or direction not in DIRECTIONS:
            raise UserError(f"objective {str(item).strip()!r} must look like COLUMN:max or COLUMN:min")
        out.append(Objective(col.strip(), direction))
    cols = [o.column for o in out]
    if len(out) < 2:
        raise UserError(f"a Pareto front needs at least two objectives, got {len(out)} ({','.join(map(str, out))})")
    if len(set(cols)) < len(cols):
        raise UserError(f"objective columns must differ, got {','.join(cols)}")
    return out


def check_objectives(df: pd.DataFrame, objectives) -> None:
    for o in objectives:
        check_column(df, o.column, "objective")
        values = df.loc[df["status"] == "finished", o.column]
        if not pd.api.types.is_numeric_dtype(values) and not values.map(_is_number).all():
            raise UserError(f"objective {o.column!r} is not a numeric column of results.csv")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- dominance and hypervolume ----------------------------------------------------------------
def non_dominated(values, directions) -> np.ndarray:
    """Boolean mask of the rows of ``values`` (n x k) that no other row dominates (at least as good
    in every objective and better in one). Equal points do not dominate each other."""
    v = np.asarray(values, dtype=float).reshape(len(values), -1)
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    v = v * sign
    mask = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        ge = (v >= v[i]).all(axis=1)
        gt = (v > v[i]).any(axis=1)
        mask[i] = not (ge & gt).any()
    return mask


def hypervolume(gains) -> float:
    """Volume dominated by ``gains`` (n x k, all maximised) above the reference point 0."""
    p = np.clip(np.asarray(gains, dtype=float).reshape(len(gains), -1) if len(gains) else np.zeros((0, 1)), 0, None)
    if len(p) == 0:
        return 0.0
    p = p[non_dominated(p, ["max"] * p.shape[1])]
    return float(_slice_volume(p))


def _slice_volume(p: np.ndarray) -> float:
    if p.shape[1] == 1:
        return p[:, 0].max()
    p = p[np.argsort(-p[:, -1], kind="stable")]
    total = 0.0
    for i in range(len(p)):
        height = p[i, -1] - (p[i + 1, -1] if i + 1 < len(p) else 0.0)
        if height > 0:
            total += height * _slice_volume(p[: i + 1, :-1])
    return total


# -- normalisation ------------------------------------------------------------------------------
def reference_values(df: pd.DataFrame, objectives) -> dict:
    """``v_ref`` per objective that needs one (see the module docstring): the largest value."""
    return {o.column: float(df[o.column].max()) for o in objectives if o.column not in UNIT_COLUMNS}


def gains(df: pd.DataFrame, objectives, refs: Optional[dict] = None) -> np.ndarray:
    """The normalised gains (n x k) of ``df``'s rows; ``refs`` from :func:`reference_values`."""
    refs = reference_values(df, objectives) if refs is None else refs
    cols = []
    for o in objectives:
        v = df[o.column].to_numpy(dtype=float)
        if o.column in UNIT_COLUMNS:
            g = v if o.direction == "max" else 1 - v
        elif o.column == "model_bits" and "dense_model_bits" in df and df["dense_model_bits"].notna().all():
            g = -np.log10(v / df["dense_model_bits"].to_numpy(dtype=float))
            g = g if o.direction == "min" else -g
        else:
            ref = refs.get(o.column, float(np.nanmax(v)) if len(v) else 1.0)
            if (v < 0).any() or not ref > 0:
                raise UserError(f"objective {o.column!r} has negative or all-zero values; no hypervolume normalisation")
            if o.column in LOG_COLUMNS:
                g = -np.log10(np.maximum(v, 1e-300) / ref)
                g = g if o.direction == "min" else -g
            else:
                g = 1 - v / ref if o.direction == "min" else v / ref
        cols.append(g)
    return np.stack(cols, axis=1) if cols else np.zeros((len(df), 0))


def normalisation_text(objectives) -> dict:
    text = {}
    for o in objectives:
        if o.column in UNIT_COLUMNS:
            text[o.column] = f"{'v' if o.direction == 'max' else '1 - v'} on [0, 1], reference {0 if o.direction == 'max' else 1}"
        elif o.column == "model_bits":
            text[o.column] = "-log10(model_bits / dense_model_bits), reference: the dense float32 model's size"
        elif o.column in LOG_COLUMNS:
            text[o.column] = f"-log10({o.column} / largest {o.column}), reference: the largest value"
        else:
            text[o.column] = (f"{'1 - v / v_ref' if o.direction == 'min' else 'v / v_ref'}, v_ref the largest "
                              f"{o.column} of the rows analysed together")
    return text


# -- the analysis ------------------------------------------------------------------------------
@dataclass
class ParetoResult:
    objectives: list
    usable: pd.DataFrame  # finished, non-suspect rows, in results.csv order
    front: pd.DataFrame
    excluded: pd.DataFrame  # with a 'reason' column
    hypervolume: float
    normalisation: dict
    refs: dict  # v_ref per objective (see module docstring)
    by: Optional[str] = None
    group_fronts: dict = field(default_factory=dict)  # group value -> front DataFrame
    group_hypervolume: dict = field(default_factory=dict)

    @property
    def references(self) -> pd.DataFrame:
        return self.usable[is_reference(self.usable)]

    def summary(self) -> dict:
        return {"objectives": [str(o) for o in self.objectives], "hypervolume": self.hypervolume,
                "normalisation": self.normalisation, "reference_values": self.refs,
                "n_finished_usable": len(self.usable), "n_front": len(self.front), "n_excluded": len(self.excluded),
                "front_trial_ids": list(self.front["trial_id"]), "by": self.by,
                "group_hypervolume": self.group_hypervolume}


def front_of(df: pd.DataFrame, objectives) -> pd.DataFrame:
    """The rows of ``df`` on the Pareto front, sorted by the first objective."""
    if df.empty:
        return df.copy()
    mask = non_dominated(df[[o.column for o in objectives]].to_numpy(dtype=float), [o.direction for o in objectives])
    first = objectives[0]
    return df[mask].sort_values(first.column, ascending=first.direction == "min", kind="stable")


def group_fronts(df: pd.DataFrame, objectives, by: str) -> dict:
    """``{group value: front of that group's rows}``, groups in sorted order."""
    return {key: front_of(g, objectives) for key, g in sorted(df.groupby(by, dropna=False), key=lambda kv: str(kv[0]))}


def pareto_analysis(df: pd.DataFrame, objectives, by: Optional[str] = None, refs: Optional[dict] = None) -> ParetoResult:
    """Front, hypervolume and (with ``by``) per-group fronts of the usable rows of ``df``."""
    objectives = parse_objectives(objectives) if isinstance(objectives, str) else list(objectives)
    check_objectives(df, objectives)
    if by is not None:
        check_column(df, by, "--by")
    needed = [o.column for o in objectives] + (["dense_model_bits"] if any(o.column == "model_bits" for o in objectives) else [])
    usable, excluded = split_usable(df, needed)
    if usable.empty:
        counts = ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items()) or "no rows"
        raise UserError(f"no usable finished trials ({counts}; {int(df.get('suspect', pd.Series(dtype=bool)).sum())} suspect)")
    refs = reference_values(usable, objectives) if refs is None else refs
    front = front_of(usable, objectives)
    res = ParetoResult(objectives, usable, front, excluded, hypervolume(gains(front, objectives, refs)),
                       normalisation_text(objectives), refs, by)
    if by is not None:
        res.group_fronts = group_fronts(usable, objectives, by)
        res.group_hypervolume = {str(k): hypervolume(gains(f, objectives, refs)) for k, f in res.group_fronts.items()}
    return res


def hypervolume_curve(df: pd.DataFrame, objectives, refs: Optional[dict] = None) -> pd.DataFrame:
    """Hypervolume of the usable trials among the first n finished ones (results.csv order, which is
    the order trials started), for n = 1 .. number of finished trials."""
    finished = df[df["status"] == "finished"]
    usable, _ = split_usable(finished, [o.column for o in objectives])
    refs = reference_values(usable, objectives) if refs is None else refs
    g = gains(usable, objectives, refs) if len(usable) else np.zeros((0, len(objectives)))
    ok = finished.index.isin(usable.index)
    rows, k = [], 0
    for n in range(1, len(finished) + 1):
        k += int(ok[n - 1])
        rows.append({"n_finished": n, "hypervolume": hypervolume(g[:k]) if k else 0.0})
    return pd.DataFrame(rows, columns=["n_finished", "hypervolume"])


if __name__ == "__main__":  # python -m analysis.pareto DIR ... == rcsweep pareto DIR ...
    import sys

    from rcsweep.cli import main

    sys.exit(main(["pareto", *sys.argv[1:]]))
