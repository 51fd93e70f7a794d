"""Multi-objective early stopping (issue 16): final hypervolume and compute, with and without it.

The search issue's two digits spaces (``bench_search.py``'s 54-point space and
``bench_search_continuous.py``'s continuous one), with more fine-tuning than the quickstart (9
epochs; the continuous space searches 3 to 9) and ``val_size`` enlarged to 512 images (digits'
default ``val`` has 143) for the screening. Per space, sampler (``--searches``; default: the default
sampler, ``tpe_front``) and search seed, the same number of trials run with and without
``early_stopping`` (rungs per space below, eta 3). Compute is
:mod:`rcsweep.compute`'s: each pretraining once, plus every trial's fine-tuning, screening and final
evaluation, in FLOPs and in the stages' seconds. The goal: the final hypervolume within 1% of the
full sweep's at no more than half of its compute, both ways.

Also: a full grid of the 54-point space recorded with screening and no stopping (``stop: false``),
replayed with the same rule (``rcsweep replay``) in its own order and in 10 random arrival orders
(:func:`shuffled_replays`): how many of the grid's front trials early stopping would have stopped
(the goal is none).

Writes, in ``--out``: ``summary.csv`` / ``summary.md`` (per space, sampler and seed: final
hypervolume, FLOPs and seconds, with and without; their ratios; trials stopped per rung),
``hv_vs_compute.png/.svg`` (hypervolume against compute spent, FLOPs and seconds, a row of two
panels per space, every run), ``replay.txt`` and ``commands.md``.

    python benchmarks/bench_early_stopping.py --work /tmp/es --out docs/results/early-stopping [--seeds 0 1 2] [--searches tpe_front random]
    python benchmarks/bench_early_stopping.py --work /tmp/es_smoke --out /tmp/es_smoke/out --smoke-test

``--record-every-rung``: instead, only the sweeps ``early_stopping_bound.py``'s rung floor reads: the
54-point grid and each continuous sweep of ``--searches`` x ``--seeds``, recorded with every
fine-tuning epoch a rung and nothing stopped (about 2 to 4 minutes each here).

``--smoke-test``: 6 trials per run, one seed, 500 training images, 2 fine-tuning epochs, rungs
[0, 1], no grid: minutes, to check the script end to end (``--spaces grid54`` ran here in 3 minutes
on 2 busy cores; too few trials for a rung to stop any: its numbers mean nothing).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_search  # noqa: E402
import bench_search_continuous  # noqa: E402

ETA = 3
SPACES = {  # name -> (space, fixed, references, objectives, budget, rungs)
    "grid54": (bench_search.SPACE, {**bench_search.FIXED, "finetune_epochs": 9, "val_size": 512},
               bench_search.REFERENCES, {"robust_acc": "max", "model_bits": "min"}, 40, [0, 1, 3]),
    "continuous": ({**bench_search_continuous.SPACE, "finetune_epochs": {"int": [3, 9]}},
                   {**bench_search_continuous.FIXED, "val_size": 512}, bench_search_continuous.REFERENCES,
                   bench_search_continuous.OBJECTIVES, 40, [0, 1, 3]),
}


def sweep(space: str, seed: int, early: bool, smoke: bool, search: str = "tpe_front", stop: bool = True) -> dict:
    s, fixed, refs, objectives, budget, rungs = SPACES[space]
    fixed = dict(fixed)
    if smoke:
        budget, rungs = 6, [0, 1]
        fixed.update(finetune_epochs=2, train_size=500)  # 3 pretraining epochs collapse adversarial training at eps 0.2
        s = {k: ({"int": [1, 2]} if k == "finetune_epochs" else v) for k, v in s.items()}
    d = {"name": f"{space}_{search}_s{seed}_{'es' if early else 'full'}", "fixed": fixed, "space": s,
         "references": refs, "search": search, "objectives": dict(objectives), "max_concurrent": 2,
         "resources": {"cpu": 1, "gpu": 0}, "search_seed": seed}
    if search != "grid":
        d["num_samples"] = budget
    if early:
        d["early_stopping"] = {"rungs": rungs, "eta": ETA, "stop": stop}
    return d


def run(work: Path, d: dict) -> Path:
    """Run (or resume) the sweep ``d`` in ``work``; its folder."""
    from rcsweep.sweep.runner import resume_sweep, run_sweep

    folder = work / d["name"]
    if (folder / "tune" / "tuner.pkl").is_file():
        resume_sweep(folder, quiet=True)
    else:
        run_sweep(d, storage=str(work), quiet=True, argv=["bench_early_stopping.py", d["name"]])
    return folder


def curve(table, objectives, refs) -> list[tuple]:
    """(FLOPs, seconds, hypervolume) after each trial in start order: compute as :mod:`rcsweep.compute`
    counts it for the trials so far, hypervolume of the usable ones' front (fixed ``refs``)."""
    from rcsweep.compute import sweep_compute
    from rcsweep.pareto import gains, hypervolume, parse_objectives
    from rcsweep.sweep.summary import front_and_usable

    objs = parse_objectives([f"{m}:{d}" for m, d in objectives])
    out = []
    for k in range(1, len(table) + 1):
        part = table.iloc[:k]
        c = sweep_compute(part)
        front, _ = front_and_usable(part, objectives)
        out.append((c["flops"], c["seconds"], hypervolume(gains(front, objs, refs)) if len(front) else 0.0))
    return out


def summarise(runs: dict, out: Path) -> list[str]:
    """runs: {(space, search, seed, early): folder}. Writes summary.csv/.md and the figure; returns
    the md lines. One reference point per space (from every run of it), so hypervolumes compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from rcsweep.pareto import parse_objectives, reference_values
    from rcsweep.results import load_results
    from rcsweep.sweep.summary import front_and_usable

    rows, curves = [], {}
    spaces = sorted({k[0] for k in runs})
    for space in spaces:
        objectives = list(SPACES[space][3].items())
        tables = {k: load_results(f) for k, f in runs.items() if k[0] == space}
        usable = pd.concat([front_and_usable(t, objectives)[1] for t in tables.values()])
        refs = reference_values(usable, parse_objectives([f"{m}:{d}" for m, d in objectives]))  # one for all
        for k, t in tables.items():
            curves[k] = curve(t, objectives, refs)
        for search, seed in sorted({(k[1], k[2]) for k in tables}):
            full, es = curves.get((space, search, seed, False)), curves.get((space, search, seed, True))
            if not full or not es:
                continue
            t = tables[(space, search, seed, True)]
            rows.append({"space": space, "search": search, "seed": seed, "hv_full": full[-1][2], "hv_es": es[-1][2],
                         "hv_ratio": es[-1][2] / full[-1][2] if full[-1][2] else float("nan"),
                         "flops_full": full[-1][0], "flops_es": es[-1][0], "flops_ratio": es[-1][0] / full[-1][0],
                         "seconds_full": full[-1][1], "seconds_es": es[-1][1], "seconds_ratio": es[-1][1] / full[-1][1],
                         "stopped": int((t["status"] == "early_stopped").sum()),
                         "stopped_at_rung": " ".join(f"{int(r)}:{n}" for r, n in sorted(
                             t.loc[t["status"] == "early_stopped", "screen_rung"].value_counts().items()))})
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "summary.csv", index=False)
    searches = sorted({k[1] for k in runs})
    fig, axes = plt.subplots(len(spaces), 2, figsize=(11, 3.8 * len(spaces)), squeeze=False)
    for row, space in enumerate(spaces):
        for (sp, search, seed, early), c in sorted(curves.items()):
            if sp != space:
                continue
            first = seed == min(k[2] for k in curves if k[0] == space and k[1] == search)
            style = dict(color=f"C{searches.index(search)}", ls="-" if early else "--", alpha=0.8,
                         label=f"{search}, {'early stopping' if early else 'full'}" if first else None)
            axes[row, 0].plot([p[0] for p in c], [p[2] for p in c], **style)
            axes[row, 1].plot([p[1] for p in c], [p[2] for p in c], **style)
        axes[row, 0].set_xlabel("compute spent (FLOPs)")
        axes[row, 1].set_xlabel("compute spent (stage seconds)")
        for ax in axes[row]:
            ax.set_ylabel(f"hypervolume ({space})")
            ax.set_xscale("log")
        axes[row, 0].legend(fontsize=8)
    fig.suptitle("Multi-objective early stopping on digits: hypervolume against compute "
                 "(solid: with, dashed: without; one line per search seed)")
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"hv_vs_compute.{ext}")
    md = ["| space | search | seed | hv full | hv es | hv ratio | FLOPs ratio | seconds ratio | stopped (rung:n) |",
          "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    md += [f"| {r.space} | {r.search} | {r.seed} | {r.hv_full:.4f} | {r.hv_es:.4f} | {r.hv_ratio:.3f} | "
           f"{r.flops_ratio:.3f} | {r.seconds_ratio:.3f} | {r.stopped} ({r.stopped_at_rung}) |" for r in df.itertuples()]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    return md


def shuffled_replays(grid: Path, orders: int = 10) -> list[str]:
    """The recorded grid replayed with the benchmark's rule in ``orders`` random arrival orders
    (references first, then the 54 points shuffled, seeds 0..orders-1): in the grid's own order the
    first points of every rung are the sweep file's first values, so one order says little. Per
    order: trials stopped, front trials stopped, compute saved, hypervolume kept."""
    import numpy as np
    import pandas as pd

    from rcsweep.commands.replay import replay_table
    from rcsweep.early_stopping import parse_early_stopping
    from rcsweep.results import load_results
    from rcsweep.sweep.folder import read_spec

    spec = read_spec(grid)
    es = parse_early_stopping({"rungs": SPACES["grid54"][5], "eta": ETA}, search="replay",
                              objectives=spec.objectives, fixed=spec.fixed, space=spec.space)
    table = load_results(grid)
    refs, rest = table[table["is_reference"].astype(bool)], table[~table["is_reference"].astype(bool)]
    lines = ["| order (seed) | stopped | front trials stopped | FLOPs saved | seconds saved | hv kept |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for seed in range(orders):
        order = pd.concat([refs, rest.iloc[np.random.default_rng(seed).permutation(len(rest))]], ignore_index=True)
        r = replay_table(order, spec.objectives, es)
        c, sv = r["compute"], r["saved"]
        lines.append(f"| {seed} | {len(r['stops'])} of {len(table)} | {len(r['front_stopped'])} of {len(r['front'])} | "
                     f"{sv['flops'] / c['flops']:.1%} | {sv['seconds'] / c['seconds']:.1%} | "
                     f"{r['hv_kept'] / r['hv_full']:.1%} |")
    return lines


def record_every_rung(work: Path, seeds, searches) -> list[Path]:
    """Sweeps recorded with every fine-tuning epoch a rung and nothing stopped (``stop: false``),
    for ``early_stopping_bound.py``'s rung floor: the 54-point grid, and each continuous sweep of
    ``searches`` x ``seeds`` (named ``..._rec``). Their folders."""
    plan = [("grid54", "grid", 0)] + [("continuous", s, seed) for s in searches for seed in seeds]
    folders = []
    for space, search, seed in plan:
        d = sweep(space, seed, True, False, search=search, stop=False)
        most = d["fixed"].get("finetune_epochs") or max(d["space"]["finetune_epochs"]["int"])
        d["early_stopping"]["rungs"] = list(range(most + 1))
        d["name"] = d["name"].replace("_es", "_rec")
        folders.append(run(work, d))
    return folders


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the sweeps (resumed if there)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the summary and figures")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    ap.add_argument("--searches", nargs="+", default=["tpe_front"],
                    help="samplers, each run with and without early stopping (default: the default sampler)")
    ap.add_argument("--smoke-test", action="store_true", help="tiny runs, one seed, no grid")
    ap.add_argument("--record-every-rung", action="store_true",
                    help="only record the grid and the continuous sweeps with every epoch a rung, nothing "
                         "stopped (for benchmarks/early_stopping_bound.py), in --work")
    args = ap.parse_args(argv)
    if args.record_every_rung:
        for folder in record_every_rung(args.work, args.seeds, args.searches):
            print(f"recorded {folder}")
        return 0
    seeds = args.seeds[:1] if args.smoke_test else args.seeds
    runs = {(space, search, seed, early): run(args.work, sweep(space, seed, early, args.smoke_test, search=search))
            for search in args.searches for space in args.spaces for seed in seeds for early in (False, True)}
    for line in summarise(runs, args.out):
        print(line)
    lines = []
    if not args.smoke_test and "grid54" in args.spaces:
        from rcsweep.commands.replay import replay

        grid = run(args.work, sweep("grid54", 0, True, False, search="grid", stop=False))
        es = {"rungs": SPACES["grid54"][5], "eta": ETA}
        lines = [replay(grid, es), "", "In random arrival orders:", *shuffled_replays(grid)]
        (args.out / "replay.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    (args.out / "commands.md").write_text("```\npython benchmarks/bench_early_stopping.py " + " ".join(
        argv if argv is not None else sys.argv[1:]) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
