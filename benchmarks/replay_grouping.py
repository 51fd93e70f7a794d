"""Which trials a rung should compare (issue 16): rules for :func:`rcsweep.rungs.group_key` replayed
on a grid recorded with screening at every rung and nothing stopped (``stop: false``).

For each rule and each of ``--orders`` random arrival orders (references first, then the grid's
points shuffled, seeds 0..orders-1: in the grid's own order the first points of every rung are the
sweep file's first values), :func:`rcsweep.commands.replay.simulate` decides with the rung rule of
rcsweep (:func:`rcsweep.rungs.decide`) and the benchmark's ``{rungs, eta}``; reported: the grid's
front trials stopped (the goal: none, in every order) and the compute of the sweep early stopping
would have run, as a share of the same trials run without it (:mod:`rcsweep.compute`: each
pretraining once, plus fine-tuning and evaluation; the early-stopping sweep adds the screening of
the rungs each trial reached and pays a stopped trial's fine-tuning up to its rung). No training:
seconds.

Rules:

- ``compression+epochs`` (rcsweep's, :func:`rcsweep.rungs.group_key`): fine-tuning methods pooled;
- ``compression+finetune+epochs``: each fine-tuning method in rungs of its own (rcsweep before);
- ``one rung after rung 0``: per compression at rung 0, every compression together from rung 1 on;
- ``one rung``: every trial of a total in one rung.

    python benchmarks/replay_grouping.py --grid docs/results/early-stopping/grid54_grid --out docs/results/early-stopping/grouping.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from early_stopping_bound import oracle  # noqa: E402


def _epochs(row) -> int:
    from rcsweep.metrics_table import missing

    e = row.get("finetune_epochs")
    return 0 if missing(e) else int(e)


RULES = {
    "compression+epochs": lambda row, r: None,  # None: rcsweep's own group_key
    "compression+finetune+epochs": lambda row, r: f"{row.get('compression')}+{row.get('finetune')}/{_epochs(row)}",
    "one rung after rung 0": lambda row, r: f"{row.get('compression') if r == 0 else 'all'}/{_epochs(row)}",
    "one rung": lambda row, r: f"all/{_epochs(row)}",
}


def es_compute(order, stops: dict, rungs) -> float:
    """FLOPs of the sweep early stopping would have run on ``order``'s trials (module docstring)."""
    from rcsweep.compute import number, sweep_compute

    flops = sweep_compute(order)["flops_pretrain"]
    for _, row in order.iterrows():
        total = number(row.get("finetune_epochs")) if row.get("finetune") != "none" else 0.0
        screened = {h["rung"]: number(h.get("flops")) for h in (row.get("screen_history") or [])}
        stop = stops.get(row["trial_id"], (None,))[0]
        flops += sum(screened.get(r, 0.0) for r in rungs if r <= total and (stop is None or r <= stop))
        if stop is None:
            flops += number(row.get("flops_finetune")) + number(row.get("flops_evaluate"))
        else:
            flops += (stop / total if total else 0.0) * number(row.get("flops_finetune"))
    return flops


def compare(grid: Path, rungs: list, eta: int, orders: int) -> list[str]:
    import numpy as np
    import pandas as pd

    from rcsweep.commands.replay import simulate
    from rcsweep.compute import sweep_compute
    from rcsweep.early_stopping import parse_early_stopping
    from rcsweep.results import load_results
    from rcsweep.rungs import group_key
    from rcsweep.sweep.folder import read_spec
    from rcsweep.sweep.summary import front_and_usable

    spec = read_spec(grid)
    table = load_results(grid)
    es = parse_early_stopping({"rungs": rungs, "eta": eta, "stop": True}, search="replay",
                              objectives=spec.objectives, fixed=spec.fixed, space=spec.space)
    front = set(front_and_usable(table, spec.objectives)[0]["trial_id"])
    c = sweep_compute(table)
    full = c["flops_pretrain"] + c["flops_finetune"] + c["flops_evaluate"]  # the same trials, no screening
    is_ref = table["is_reference"].astype(bool)
    refs, rest = table[is_ref], table[~is_ref]
    shown = grid.relative_to(ROOT) if grid.is_relative_to(ROOT) else grid
    lines = [f"Grid `{shown}` ({len(table)} trials, {len(front)} on its front), rungs {rungs}, eta {eta}, "
             f"{orders} random arrival orders:", "",
             "| rule | orders stopping a front trial | front trials stopped (most) | trials stopped (mean) | "
             "compute vs no early stopping: mean [min, max] |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, rule in RULES.items():
        group = None if rule({}, 0) is None else rule
        lost, stopped, ratios = [], [], []
        for seed in range(orders):
            order = pd.concat([refs, rest.iloc[np.random.default_rng(seed).permutation(len(rest))]], ignore_index=True)
            stops = simulate(order, spec.objectives, es, 10, group=group)
            lost.append(len(front & set(stops)))
            stopped.append(len(stops))
            ratios.append(es_compute(order, stops, es.rungs) / full)
        lines.append(f"| {name}{' (rcsweep)' if group is None else ''} | {sum(x > 0 for x in lost)} of {orders} | "
                     f"{max(lost)} of {len(front)} | {np.mean(stopped):.1f} of {len(rest)} | "
                     f"{np.mean(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |")
    no_screening = table.assign(flops_screen=0.0)  # the grid recorded its screening; the oracle screens nothing
    lines += ["", f"rcsweep's rule: `{group_key.__module__}.group_key`; oracle (every trial off the front "
              f"stopped before its first rung, screening free): {oracle(no_screening, front):.2f}"]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, default=ROOT / "docs" / "results" / "early-stopping" / "grid54_grid")
    ap.add_argument("--rungs", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="a markdown file (default: print only)")
    args = ap.parse_args(argv)
    text = "\n".join(compare(args.grid, args.rungs, args.eta, args.orders)) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
