"""How far early stopping *could* cut the compute of the early-stopping benchmark's sweeps (issue 16).

Reads the per-trial CSVs that ``bench_early_stopping.py`` committed (``<space>_<search>_s<seed>_full.csv``
and ``..._es.csv``) and writes, per full sweep, how its compute (:mod:`rcsweep.compute`: each shared
pretraining once, plus every trial's fine-tuning, screening and final evaluation; FLOPs and stage
seconds) splits into the shared pretraining and the trials, and two ratios to it:

- ``es``: the sweep with early stopping, as measured (the benchmark's own ratio);
- ``oracle``: a lower bound for any early stopping that keeps the front: the same sweep if every
  trial that is not on its final front, nor a reference, had cost nothing at all (stopped before
  its first rung, screening free). Pretraining is shared and never a rung (issue 16, item 1), so
  no rule can go below ``pretraining share + front trials' share``.
- ``oracle 1%``: a lower bound for any early stopping whose final hypervolume is within 1% of the
  full sweep's (the issue's goal) on the same trials: it may also drop front trials, but removing
  a set of trials loses at least the sum of their exclusive contributions (the hypervolume that
  only each dominates: disjoint regions), so the trials it can drop weigh at most 1% of the
  hypervolume in exclusive contributions. The most compute such a set can hold is bounded by the
  fractional knapsack (front trials by compute per unit of exclusive contribution, the last one in
  part), which makes the bound valid, not just an estimate. For random search the sweeps with and
  without early stopping run the same trials; for a model-based search early stopping changes
  the path, so there it bounds a rule run on this sweep's trials.
- ``rung floor``: a lower bound for rcsweep's rung rule (:func:`rcsweep.rungs.decide`, any ``eta``,
  any arrival order) with the rungs and margin given, even with free screening. That rule stops a
  trial only when it is degenerate or off its rung's first front, and a point off the first front is
  dominated beyond the margin by another point of the rung (:func:`rcsweep.rungs.dominates`). So the
  trials it can stop, in any order, are among those whose point at some rung is degenerate or
  dominated beyond the margin by some other trial's point at that rung, in the same rung group
  (:func:`rcsweep.rungs.group_key`), with every trial's rung points known in hindsight. The floor
  stops each of those at the first such rung: it pays its fine-tuning up to that rung, no
  evaluation and no screening at all. It needs every trial's screening at every rung: a sweep
  recorded with ``early_stopping: {stop: false}`` (``--recorded``), or, for the 54-point space,
  whose trials all train with ``seed: 0`` so that a configuration is the same model in any sweep,
  the recorded grid (``--grid``), whose rung points each full sweep's trials take by configuration.

    python benchmarks/early_stopping_bound.py --sweeps docs/results/early-stopping/sweeps --out docs/results/early-stopping/bound.md
    # the rung floor reads --grid (default docs/results/early-stopping/grid54_every_rung) and --recorded
    # (default docs/results/early-stopping/recorded), written by
    python benchmarks/bench_early_stopping.py --work runs/es5 --out runs/es5/out --searches random tpe_front --record-every-rung
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

OBJECTIVES = {"grid54": [("robust_acc", "max"), ("model_bits", "min")],
              "continuous": [("robust_acc", "max"), ("model_bits", "min"), ("flops_route", "min")]}


def load(csv: Path):
    """A committed per-trial CSV as :func:`rcsweep.results.load_results` reads a sweep folder."""
    from rcsweep.results import load_results

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(csv, Path(tmp) / "results.csv")
        return load_results(tmp)


def oracle(table, front: set, unit: str = "flops") -> float:
    """The ``oracle`` share (module docstring) of a sweep without early stopping (``table``), whose
    final front holds the trial ids ``front``: its pretraining, its references' and its front
    trials' compute, over its whole compute (``unit``: ``flops`` or ``seconds``)."""
    from rcsweep.compute import sweep_compute

    whole = sweep_compute(table)
    kept = sweep_compute(table[table["trial_id"].isin(front) | table["is_reference"].fillna(False).astype(bool)])
    return (whole[f"{unit}_pretrain"] + kept[unit] - kept[f"{unit}_pretrain"]) / whole[unit]


def droppable(table, front_rows, objectives, refs, unit: str, slack: float = 0.01) -> float:
    """The most compute (``unit``) of ``table``'s front trials (``front_rows``, references never
    dropped) that a set whose exclusive hypervolume contributions sum to at most ``slack`` of the
    front's hypervolume can hold: the fractional knapsack (module docstring, ``oracle 1%``)."""
    from rcsweep.compute import sweep_compute
    from rcsweep.pareto import gains, hypervolume, parse_objectives

    objs = parse_objectives([f"{m}:{d}" for m, d in objectives])
    g = gains(front_rows, objs, refs)
    total = hypervolume(g)
    items = []
    for i, (_, row) in enumerate(front_rows.iterrows()):
        if bool(row.get("is_reference")):
            continue
        exclusive = total - hypervolume(g[[j for j in range(len(g)) if j != i]])
        c = sweep_compute(table[table["trial_id"] == row["trial_id"]])
        items.append((max(exclusive, 0.0), c[unit] - c[f"{unit}_pretrain"]))
    capacity, dropped = slack * total, 0.0
    for weight, cost in sorted(items, key=lambda it: it[0] / it[1] if it[1] > 0 else float("inf")):
        if weight <= capacity:
            capacity -= weight
            dropped += cost
        else:
            dropped += cost * capacity / weight
            break
    return dropped


def rung_stops(table, objectives, rungs, margin_se: float, num_classes: int = 10, group=None) -> dict:
    """``{trial_id: rung}``: the trials of ``table`` (every trial's ``screen_history`` at every rung
    in ``rungs`` that its fine-tuning reaches) that the ``rung floor`` (module docstring) stops, at
    the first rung where its point is degenerate or dominated beyond ``margin_se`` by another
    trial's point at that rung in its rung group (``group(row)``; default
    :func:`rcsweep.rungs.group_key`, rcsweep's). References are never stopped."""
    from rcsweep.metrics_table import missing
    from rcsweep.rungs import dominates, group_key, rung_point_of
    from rcsweep.trial_status import degeneracy

    group = group or group_key
    rows = table[table["status"].isin(["finished", "early_stopped"])]
    points: dict = {}  # (group, rung) -> [point]
    for _, row in rows.iterrows():
        for h in row.get("screen_history") or []:
            if h["rung"] in rungs:
                points.setdefault((group(row), h["rung"]), []).append(rung_point_of(row["trial_id"], h["values"], h))
    stops = {}
    for _, row in rows.iterrows():
        if bool(row.get("is_reference")):
            continue
        total = 0 if row.get("finetune") == "none" or missing(row.get("finetune_epochs")) else int(row["finetune_epochs"])
        history = {h["rung"]: h for h in row.get("screen_history") or []}
        for r in (r for r in rungs if r <= total):
            if r not in history:
                raise ValueError(f"trial {row['trial_id']} recorded no screening at rung {r}")
            me = rung_point_of(row["trial_id"], history[r]["values"], history[r])
            if degeneracy(me.clean_acc, me.n, num_classes) or any(
                    p.trial_id != me.trial_id and dominates(p, me, objectives, margin_se)
                    for p in points[(group(row), r)]):
                stops[row["trial_id"]] = r
                break
    return stops


def rung_floor(table, objectives, rungs, margin_se: float, unit: str = "flops", group=None) -> float:
    """The ``rung floor`` (module docstring) of ``table`` (recorded at every rung, nothing stopped)
    as a share of the same trials' compute without early stopping (no screening), in ``unit``;
    ``group``: as :func:`rung_stops`'s."""
    from rcsweep.compute import number, sweep_compute

    stops = rung_stops(table, objectives, rungs, margin_se, group=group)
    whole = sweep_compute(table.assign(flops_screen=0.0, time_screen_s=0.0))
    ft_col, ev_col = ("flops_finetune", "flops_evaluate") if unit == "flops" else ("time_finetune_s", "time_evaluate_s")
    spent = whole[f"{unit}_pretrain"]
    for _, row in table.iterrows():
        ft, ev = number(row.get(ft_col)), number(row.get(ev_col))
        spent += number(row.get("time_compress_s")) if unit == "seconds" else 0.0  # before rung 0: always paid
        rung = stops.get(row["trial_id"])
        if rung is None:
            spent += ft + ev
        elif rung:
            spent += ft * rung / int(row["finetune_epochs"])
    return spent / whole[unit]


def with_grid_rungs(full, grid):
    """``full``'s trials with the rung screening of the same configuration in the recorded ``grid``
    (module docstring, ``rung floor``); raises ValueError where the grid lacks a configuration."""
    from rcsweep.config import TrialConfig
    from rcsweep.sweep.identity import config_key

    by_config = {config_key(TrialConfig.from_row(row)): row["screen_history"] for _, row in grid.iterrows()}
    keys = [config_key(TrialConfig.from_row(row)) for _, row in full.iterrows()]
    missing_keys = [k for k in keys if k not in by_config]
    if missing_keys:
        raise ValueError(f"the grid has no trial of configuration {missing_keys[0]}")
    return full.assign(screen_history=[by_config[k] for k in keys])


def bound(full, es, objectives, refs=None) -> dict:
    """The split of ``full``'s compute and the ``es``, ``oracle`` and ``oracle 1%`` ratios (module
    docstring); ``refs``: the hypervolume's reference values (one set per space)."""
    from rcsweep.compute import sweep_compute
    from rcsweep.sweep.summary import front_and_usable

    whole = sweep_compute(full)
    front_rows = front_and_usable(full, objectives)[0]
    front = set(front_rows["trial_id"])
    out = {"front": len(front), "trials": len(full)}
    for unit in ("flops", "seconds"):
        out[f"pretrain_share_{unit}"] = whole[f"{unit}_pretrain"] / whole[unit]
        out[f"oracle_{unit}"] = oracle(full, front, unit)
        out[f"oracle_slack_{unit}"] = out[f"oracle_{unit}"] - droppable(full, front_rows, objectives, refs, unit) / whole[unit]
        out[f"es_{unit}"] = sweep_compute(es)[unit] / whole[unit]
    return out


def space_refs(folder: Path, space: str, objectives):
    """The hypervolume's reference values of ``space``: from every sweep of it in ``folder``, as
    ``bench_early_stopping.py`` takes them."""
    import pandas as pd

    from rcsweep.pareto import parse_objectives, reference_values
    from rcsweep.results import split_usable

    objs = parse_objectives([f"{m}:{d}" for m, d in objectives])
    tables = [load(p) for p in sorted(folder.glob(f"{space}_*.csv"))]
    usable, _ = split_usable(pd.concat(tables, ignore_index=True), needed=[o.column for o in objs])
    return reference_values(usable, objs)


BENCH_RUNGS = [0, 1, 3]  # bench_early_stopping.py's


def floor_lines(sweeps: Path, grid: Path, recorded: Path) -> list[str]:
    """The ``rung floor`` table (module docstring): the recorded ``grid`` (every epoch a rung) and
    each 54-point full sweep in ``sweeps`` on it, and each recorded sweep CSV in ``recorded``."""
    from rcsweep.results import load_results
    from rcsweep.sweep.summary import front_and_usable

    tables = []
    if grid.is_dir():
        g = load_results(grid)
        tables.append(("grid54", "grid", "-", g))
        for full_csv in sorted(sweeps.glob("grid54_*_full.csv")):
            search, seed = full_csv.stem[len("grid54_"):].rsplit("_s", 1)
            tables.append(("grid54", search, seed.split("_")[0], with_grid_rungs(load(full_csv), g)))
    for rec in sorted(recorded.glob("*_rec.csv")) if recorded.is_dir() else []:
        space, rest = rec.stem.split("_", 1)
        search, seed = rest.rsplit("_s", 1)
        tables.append((space, search, seed.split("_")[0], load(rec)))
    lines = ["| space | search | seed | front / trials | rungs [0, 1, 3], margin 2 (FLOPs, s) | every epoch a rung, "
             "margin 2 (FLOPs, s) | every epoch, margin 0 (FLOPs, s) | one rung for every compression, every epoch, "
             "margin 0: FLOPs (front trials it stops; hypervolume kept) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for space, search, seed, t in tables:
        obj = OBJECTIVES[space]
        every = sorted({h["rung"] for hist in t["screen_history"] if isinstance(hist, list) for h in hist})
        front = set(front_and_usable(t, obj)[0]["trial_id"])
        cells = []
        for rungs, margin in ((BENCH_RUNGS, 2.0), (every, 2.0), (every, 0.0)):
            cells.append(", ".join(f"{rung_floor(t, obj, rungs, margin, unit):.2f}" for unit in ("flops", "seconds")))
        one = lambda row: "all"  # noqa: E731
        stops = set(rung_stops(t, obj, every, 0.0, group=one))
        lines.append(f"| {space} | {search} | {seed} | {len(front)} / {len(t)} | {' | '.join(cells)} | "
                     f"{rung_floor(t, obj, every, 0.0, group=one):.2f} ({len(front & stops)} of {len(front)}; "
                     f"{hv_kept(t, obj, stops):.3f}) |")
    return lines


def hv_kept(table, objectives, stops: set) -> float:
    """The hypervolume of ``table``'s front without the trials ``stops`` over its whole front's (one
    reference point, the table's own: :func:`rcsweep.commands.replay.hypervolume_kept`)."""
    from rcsweep.commands.replay import hypervolume_kept

    _, full, kept = hypervolume_kept(table, objectives, stops)
    return kept / full


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = ROOT / "docs" / "results" / "early-stopping"
    ap.add_argument("--sweeps", type=Path, default=here / "sweeps")
    ap.add_argument("--grid", type=Path, default=here / "grid54_every_rung",
                    help="the 54-point grid recorded with every fine-tuning epoch a rung (stop: false)")
    ap.add_argument("--recorded", type=Path, default=here / "recorded",
                    help="sweep CSVs (<space>_<search>_s<seed>_rec.csv) recorded with every epoch a rung")
    ap.add_argument("--out", type=Path, default=None, help="a markdown table (default: print only)")
    args = ap.parse_args(argv)
    lines = ["| space | search | seed | front / trials | pretraining share (FLOPs, s) | oracle (FLOPs, s) | "
             "oracle 1% (FLOPs, s) | early stopping, measured (FLOPs, s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    refs = {}
    for full_csv in sorted(args.sweeps.glob("*_full.csv")):
        space, rest = full_csv.stem.split("_", 1)
        search, seed = rest.rsplit("_s", 1)[0], rest.rsplit("_s", 1)[1].split("_")[0]
        es_csv = full_csv.with_name(full_csv.name.replace("_full.csv", "_es.csv"))
        if space not in OBJECTIVES or not es_csv.is_file():
            continue
        if space not in refs:
            refs[space] = space_refs(args.sweeps, space, OBJECTIVES[space])
        b = bound(load(full_csv), load(es_csv), OBJECTIVES[space], refs[space])
        lines.append(f"| {space} | {search} | {seed} | {b['front']} / {b['trials']} | "
                     f"{b['pretrain_share_flops']:.2f}, {b['pretrain_share_seconds']:.2f} | "
                     f"{b['oracle_flops']:.2f}, {b['oracle_seconds']:.2f} | "
                     f"{b['oracle_slack_flops']:.2f}, {b['oracle_slack_seconds']:.2f} | {b['es_flops']:.2f}, {b['es_seconds']:.2f} |")
    lines += ["", "Rung floor: the least compute of rcsweep's rung rule (any eta, any arrival order, screening "
              "free) as a share of the same trials without early stopping; the last column, a rule with one rung "
              "for every compression method and no margin (module docstring).", ""]
    lines += floor_lines(args.sweeps, args.grid, args.recorded)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
