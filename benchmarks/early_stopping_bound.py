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

No training: seconds.

    python benchmarks/early_stopping_bound.py --sweeps docs/results/early-stopping/sweeps --out docs/results/early-stopping/bound.md
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=Path, default=ROOT / "docs" / "results" / "early-stopping" / "sweeps")
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
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
