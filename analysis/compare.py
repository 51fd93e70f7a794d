"""Several sweeps side by side (for example Optuna against grid, or two seeds): their fronts, and
the hypervolume against the number of finished trials. Objectives whose normalisation depends
on the rows (see :mod:`analysis.pareto`) use reference values taken from all sweeps together,
so the hypervolumes are comparable."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rcsweep.errors import UserError

from .common import load_sweep, split_usable
from .pareto import DEFAULT_OBJECTIVES, hypervolume_curve, pareto_analysis, parse_objectives, reference_values


def sweep_names(folders) -> list[str]:
    """Folder names, with their parent where two would otherwise be the same."""
    paths = [Path(f).resolve() for f in folders]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


@dataclass
class Comparison:
    objectives: list
    results: dict  # name -> ParetoResult
    curves: dict  # name -> hypervolume_curve DataFrame
    refs: dict

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"sweep": n, "n_finished": int(self.curves[n]["n_finished"].max()),
                              "n_usable": len(r.usable), "n_front": len(r.front), "hypervolume": r.hypervolume}
                             for n, r in self.results.items()])


def compare(folders, objectives=DEFAULT_OBJECTIVES) -> Comparison:
    if len(folders) < 2:
        raise UserError(f"compare needs at least two sweep folders, got {len(folders)}")
    objectives = parse_objectives(objectives) if isinstance(objectives, str) else list(objectives)
    names = sweep_names(folders)
    if len(set(names)) < len(names):
        raise UserError("the same sweep folder is given twice")
    frames = {n: load_sweep(f) for n, f in zip(names, folders)}
    usable = pd.concat([split_usable(df, [o.column for o in objectives])[0] for df in frames.values()
                        if all(o.column in df for o in objectives)])
    refs = reference_values(usable, objectives) if len(usable) else {}
    results, curves = {}, {}
    for (name, df), folder in zip(frames.items(), folders):
        try:
            results[name] = pareto_analysis(df, objectives, refs=refs)
        except UserError as e:
            raise UserError(f"{folder}: {e}") from None
        curves[name] = hypervolume_curve(df, objectives, refs)
    return Comparison(objectives, results, curves, refs)


def run_compare(folders, out, objectives=DEFAULT_OBJECTIVES) -> list[Path]:
    """Write ``<stem>.png/.svg`` (fronts + hypervolume curves), ``<stem>.csv`` (the curves) and
    ``<stem>.json`` (hypervolume per sweep). Returns the paths."""
    from rcsweep.fileio import atomic_write_json, atomic_write_text, make_folder

    from .plots import eps_text, plot_compare

    c = compare(folders, objectives)
    stem = Path(out).with_suffix("")
    make_folder(stem.parent, "--out")
    long = pd.concat([cv.assign(sweep=n) for n, cv in c.curves.items()], ignore_index=True)
    atomic_write_text(stem.with_suffix(".csv"), long[["sweep", "n_finished", "hypervolume"]].to_csv(index=False))
    atomic_write_json(stem.with_suffix(".json"), {"objectives": [str(o) for o in c.objectives],
                                                  "reference_values": c.refs,
                                                  "sweeps": c.table().to_dict(orient="records"),
                                                  "normalisation": next(iter(c.results.values())).normalisation})
    eps = eps_text(pd.concat([r.usable for r in c.results.values()]))
    figs = plot_compare({n: r.front for n, r in c.results.items()}, c.curves, c.objectives, stem, eps)
    return [stem.with_suffix(".csv"), stem.with_suffix(".json")] + figs

