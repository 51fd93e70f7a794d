"""Pareto fronts and hypervolume of a sweep's results table (compute only; :mod:`analysis.plots`
draws them). Dominance, the hypervolume and its normalisation are the pure functions of
:mod:`rcsweep.pareto` (its docstring gives the normalisation); this module applies them to the
rows of ``results.csv`` and writes the front's files (:func:`write_pareto`).

Objectives are ``column:direction`` pairs (``robust_acc:max,model_bits:min``); any two or more
numeric columns of ``results.csv`` can be used (three or more are drawn as one 2-D projection per
pair: :func:`rcsweep.pareto.objective_pairs`). Only usable rows count (finished, not flagged, not
a repeated configuration: :func:`rcsweep.results.split_usable`); the others come back in
``excluded`` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from rcsweep import metrics_table
from rcsweep.errors import UserError
from rcsweep.fileio import atomic_write_json
from rcsweep.pareto import front_order, gains, hypervolume, normalisation_text, parse_objectives, reference_values

from .common import check_column, is_reference, split_usable, to_csv

DEFAULT_OBJECTIVES = ",".join(f"{m}:{d}" for m, d in metrics_table.DEFAULT_OBJECTIVES)


def check_objectives(df: pd.DataFrame, objectives) -> None:
    for o in objectives:
        check_column(df, o.column, "objective")
        values = df.loc[df["status"] == "finished", o.column]
        if not pd.api.types.is_numeric_dtype(values) and not values.map(_is_number).all():
            raise UserError(f"objective {o.column!r} is not a numeric column of results.csv")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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
    return df.iloc[front_order(df[[o.column for o in objectives]].to_numpy(dtype=float),
                               [o.direction for o in objectives])]


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


def write_pareto(result: ParetoResult, csv_path, draw: bool = True) -> list[Path]:
    """``FILE`` (the front), ``<stem>_excluded.csv``, ``<stem>.json`` (hypervolume and its
    normalisation), ``<stem>_groups.csv`` with ``--by``, and the figure ``<stem>.png/.svg``."""
    csv_path = Path(csv_path)
    stem = csv_path.with_suffix("")
    paths = [to_csv(result.front, csv_path),
             to_csv(result.excluded, stem.with_name(stem.name + "_excluded.csv"))]
    if result.by:
        groups = pd.concat([f.assign(group=str(k)) for k, f in result.group_fronts.items()], ignore_index=True)
        paths.append(to_csv(groups, stem.with_name(stem.name + "_groups.csv")))
    js = stem.with_suffix(".json")
    atomic_write_json(js, result.summary())
    paths.append(js)
    if draw:
        from .plots import plot_pareto  # matplotlib only when drawing

        paths += plot_pareto(result, stem)
    return paths

