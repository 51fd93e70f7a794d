"""Dominance, Pareto fronts and hypervolume as pure functions of arrays (no files, no pandas, no
Ray): what ``rcsweep status`` (:mod:`rcsweep.sweep.summary`) and the analysis layer
(:mod:`analysis.pareto`, which adds the DataFrame-level analysis) both compute.

An objective is a column and a direction (:class:`Objective`, ``max`` or ``min``; two or more, from
:func:`parse_objectives`).

Hypervolume normalisation (fixed, so that sweeps are comparable). Each objective value ``v`` is
mapped to a gain ``g`` (larger is better, reference point at ``g = 0``, negative gains clipped);
which rule applies comes from the metric table (:mod:`rcsweep.metrics_table`, ``unit`` and
``scale``):

- columns in [0, 1] (accuracies, ``sparsity_measured``): ``g = v`` for max, ``1 - v`` for min;
  the reference point is the worst end of [0, 1] (robust accuracy 0);
- ``model_bits``: ``g = -log10(model_bits / dense_model_bits)``, the decades by which the model is
  smaller than the same network dense in float32; the reference point is the dense model's size;
- other sizes (``params``, ``params_nonzero``, ``macs``, ``bops``): ``g = -log10(v / v_ref)``
  (max: ``log10(v / v_ref)``), ``v_ref`` the largest value among the rows analysed together;
- costs and every other non-negative column (scale ``ratio_ref``: times, latencies,
  ``flops_pretrain``, ``flops_finetune``, ``flops_route``): ``g = 1 - v / v_ref`` for min,
  ``v / v_ref`` for max, ``v_ref`` the largest value among the rows analysed together, so the
  costliest of them gains 0 and a free one 1 (a route at a tenth of the costliest route's training
  FLOPs gains 0.9). Only these last two kinds depend on the rows: hypervolumes of such objectives
  are comparable between sweeps analysed together (``rcsweep compare``), not across separate calls.

For the default objectives the hypervolume is in (accuracy x decades of size reduction): a model
with robust accuracy 0.6 at 1/10 of the dense size alone gives 0.6. The hypervolume itself is
moocore's exact computation (:func:`moocore.hypervolume`, any number of objectives).

A ``table`` argument is rows with named columns: a pandas DataFrame, or anything else whose
``table[column]`` gives a column's values, ``column in table`` its presence and ``len(table)`` the
number of rows.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import moocore
import numpy as np

from . import metrics_table
from .errors import UserError

DIRECTIONS = ("max", "min")
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


def objective_pairs(objectives) -> list[tuple]:
    """The 2-D projections a front over ``objectives`` is drawn in (:mod:`analysis.plots`):
    ``(y, x)`` for every pair, in objective order; 1 pair for 2 objectives, 3 for 3, 6 for 4."""
    return list(itertools.combinations(objectives, 2))


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


def front_order(values, directions) -> np.ndarray:
    """Row positions of the front of ``values`` (n x k): the non-dominated rows, best first in the
    first objective, ties in their original order."""
    v = np.asarray(values, dtype=float).reshape(len(values), -1)
    rows = np.flatnonzero(non_dominated(v, directions))
    first = v[rows, 0] if directions[0] == "min" else -v[rows, 0]
    return rows[np.argsort(first, kind="stable")]


def hypervolume(gains) -> float:
    """Volume dominated by ``gains`` (n x k, k >= 1, all maximised) above the reference point 0:
    negative gains count as 0, no rows give 0.0. Computed by :func:`moocore.hypervolume`."""
    p = np.clip(np.asarray(gains, dtype=float).reshape(len(gains), -1) if len(gains) else np.zeros((0, 1)), 0, None)
    if len(p) == 0:
        return 0.0
    return float(moocore.hypervolume(p, ref=np.zeros(p.shape[1]), maximise=True))


# -- normalisation ------------------------------------------------------------------------------
def _column(table, column: str) -> np.ndarray:
    return np.asarray(table[column], dtype=float).reshape(-1)


def reference_values(table, objectives) -> dict:
    """``v_ref`` per objective that needs one (see the module docstring): the largest value
    (NaN when there is none)."""
    refs = {}
    for o in objectives:
        if o.column not in UNIT_COLUMNS:
            v = _column(table, o.column)
            v = v[~np.isnan(v)]
            refs[o.column] = float(v.max()) if len(v) else float("nan")
    return refs


def gains(table, objectives, refs: Optional[dict] = None) -> np.ndarray:
    """The normalised gains (n x k) of ``table``'s rows; ``refs`` from :func:`reference_values`."""
    refs = reference_values(table, objectives) if refs is None else refs
    cols = []
    for o in objectives:
        v = _column(table, o.column)
        if o.column in UNIT_COLUMNS:
            g = v if o.direction == "max" else 1 - v
        elif o.column == "model_bits" and _has_values(table, "dense_model_bits"):
            g = -np.log10(v / _column(table, "dense_model_bits"))
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
    return np.stack(cols, axis=1) if cols else np.zeros((len(table), 0))


def _has_values(table, column: str) -> bool:
    """``column`` is in ``table`` and none of its cells is missing."""
    return column in table and not np.isnan(_column(table, column)).any()


def normalisation_text(objectives) -> dict:
    """``{column: the normalisation rule its gains follow}``, for reports and JSON summaries."""
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
