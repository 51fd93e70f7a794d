"""Search efficiency (issue 8): multi-objective Optuna against random search and the grid, at the
same trial budget, several search seeds each; hypervolume against finished trials.

The space is the study's, reduced (standard / adversarial pretraining x structured pruning at
0.1, 0.3, 0.5, 0.7, 0.9 or quantization to 16/8/4/2 bits x no / clean / adversarial fine-tuning:
54 points and the 2 dense references), on scikit-learn's digits so that the whole comparison fits about an hour of this
2-core machine. Every trial of every sweep trains with ``seed: 0``, so a configuration gives the
same model whichever search drew it: the curves differ only by what each search chose to run.

Hypervolume uses the analysis layer's fixed normalisation (robust accuracy on [0, 1] with
reference 0; -log10(model_bits / dense model_bits)), with one reference for all sweeps, over
the finished trials in start order (``analysis.compare``). The grid's trials are run in its fixed
order (pretraining mode, then compression, ...), so its search seed changes nothing: it is run
once. Writes, in ``--out``: ``curves.csv`` (every sweep's curve), ``summary.csv`` / ``summary.md``
(mean, min and max over seeds at chosen budgets; trials each run needed to reach the grid's final
hypervolume), ``hypervolume.png/.svg``, ``commands.md``.

    python benchmarks/bench_search.py --work /tmp/search --out docs/results/search [--seeds 0 1 2]
    python benchmarks/bench_search.py --work runs/search --searches tpe --budget 28 --out runs/search/summary

``--searches`` names the samplers to run (``grid`` once, the others once per seed; default: grid,
tpe, random). ``benchmarks/replay_search.py --real`` measures trained sweeps as it measures its
replays (issue 15).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPACE = {
    "pretrain": {"choice": ["standard", "adversarial"]},
    "compression": {"choice": ["prune_structured", "quant"]},
    "sparsity": {"choice": [0.1, 0.3, 0.5, 0.7, 0.9]},
    "weight_bits": {"choice": [16, 8, 4, 2]},
    "finetune": {"choice": ["none", "clean", "adversarial"]},
}
FIXED = {"dataset": "digits", "batch_size": 32, "pretrain_epochs": 10, "eps_eval": 0.2, "attack_steps": 5,
         "eval_restarts": 1, "finetune_epochs": 2}
REFERENCES = [{"pretrain": "adversarial", "compression": "none", "finetune": "none"},
              {"pretrain": "standard", "compression": "none", "finetune": "none"}]
BUDGET = 56  # the grid's 54 points + the 2 references
CHECKPOINTS = (10, 19, 28, 38, 47, 56)
REACH = "trials to grid's final hv"
REACH95 = "trials to 95% of it"


def sweep_dict(search: str, seed: int, budget: int) -> dict:
    return {"name": f"{search}_s{seed}", "fixed": dict(FIXED), "space": SPACE, "references": REFERENCES,
            "search": search, "objectives": {"robust_acc": "max", "model_bits": "min"},
            "num_samples": budget, "max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0}, "search_seed": seed}


def run_all(work: Path, seeds, budget: int, searches=("grid", "tpe", "random"), make=None) -> dict:
    """Run (or resume) each sweep of ``searches`` (the grid once, the others per seed), each made
    by ``make(search, seed, budget)`` (default :func:`sweep_dict`); return {name: folder}."""
    make = make or sweep_dict
    from rcsweep.sweep.runner import resume_sweep, run_sweep

    folders = {}
    plan = [("grid", 0)] * ("grid" in searches) + [(s, seed) for s in searches if s != "grid" for seed in seeds]
    for search, seed in plan:
        d = make(search, seed, budget)
        folder = work / d["name"]
        t0 = time.perf_counter()
        if (folder / "results.csv").is_file():
            from rcsweep.results import load_results

            if (load_results(folder)["status"] == "finished").sum() < budget:
                resume_sweep(folder, quiet=True)
        else:
            if folder.exists():
                shutil.rmtree(folder)  # created but never started: nothing to keep
            run_sweep(d, storage=str(work), quiet=True, argv=["bench_search.py", d["name"]])
        print(f"{d['name']}: {time.perf_counter() - t0:.0f} s", flush=True)
        folders[d["name"]] = folder
    return folders


def plot_seed_band(ax, g, x: str, color, label: str, linestyle: str = "-", alpha: float = 0.15) -> None:
    """One search's hypervolume curve from ``g`` (columns ``x``, ``seed``, ``hypervolume``): the
    mean over seeds as a line, their min-max as a band (when there are several seeds)."""
    wide = g.pivot(index=x, columns="seed", values="hypervolume")
    at = wide.index.to_numpy()
    ax.plot(at, wide.mean(axis=1).to_numpy(), color=color, label=label, linestyle=linestyle)
    if wide.shape[1] > 1:
        ax.fill_between(at, wide.min(axis=1).to_numpy(), wide.max(axis=1).to_numpy(), color=color, alpha=alpha,
                        linewidth=0)


def summarise(folders: dict, out: Path, budget: int) -> None:
    import numpy as np
    import pandas as pd

    from analysis.compare import compare
    from analysis.style import figure, save

    cmp = compare([str(f) for f in folders.values()])
    curves = []
    for name, curve in cmp.curves.items():
        search, seed = name.rsplit("_s", 1)
        curves.append(curve.assign(search=search, seed=int(seed)))
    curves = pd.concat(curves, ignore_index=True)[["search", "seed", "n_finished", "hypervolume"]]
    out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(out / "curves.csv", index=False)

    grid = curves[curves["search"] == "grid"]
    target = float(grid["hypervolume"].max())
    def reached(c, share: float):
        # the same configuration can differ in the last digits between sweeps (evaluation restarts
        # are random), so "reached" allows 1e-4 of the target
        hit = c[c["hypervolume"] >= share * target * (1 - 1e-4)]
        return int(hit["n_finished"].min()) if len(hit) else None

    rows = []
    for search, g in curves.groupby("search", sort=False):
        by_seed = [c for _, c in g.groupby("seed")]
        reach, reach95 = [reached(c, 1.0) for c in by_seed], [reached(c, 0.95) for c in by_seed]
        row = {"search": search, "seeds": g["seed"].nunique()}
        for n in CHECKPOINTS:
            at = g[g["n_finished"] == min(n, budget)]["hypervolume"]
            row[f"hv@{n} mean"] = at.mean()
            row[f"hv@{n} min"] = at.min()
            row[f"hv@{n} max"] = at.max()
        row[REACH] = ", ".join("never" if r is None else str(r) for r in reach)
        row[REACH95] = ", ".join("never" if r is None else str(r) for r in reach95)
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)

    lines = [f"Grid's final hypervolume: **{target:.4f}** (after {len(grid)} finished trials).", "",
             "| search | seeds | " + " | ".join(f"hv at {n} trials: mean [min, max]" for n in CHECKPOINTS)
             + " | trials to reach the grid's final hv, per seed | trials to reach 95% of it |",
             "| --- | ---: | " + " | ".join("---:" for _ in CHECKPOINTS) + " | --- | --- |"]
    for r in rows:
        cells = " | ".join(f"{r[f'hv@{n} mean']:.4f} [{r[f'hv@{n} min']:.4f}, {r[f'hv@{n} max']:.4f}]"
                           for n in CHECKPOINTS)
        lines.append(f"| {r['search']} | {r['seeds']} | {cells} | {r[REACH]} | {r[REACH95]} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")

    fig, ax = figure(6.4, 4.2)
    colors = {"grid": "#444444", "optuna": "#1f77b4", "tpe": "#1f77b4", "random": "#d62728"}
    for search, g in curves.groupby("search", sort=False):
        seeds = g["seed"].nunique()
        label = search if seeds == 1 else f"{search} (mean of {seeds} seeds, band: min-max)"
        plot_seed_band(ax, g, "n_finished", colors.get(search), label, alpha=0.2)
    ax.axhline(target, color="#444444", linestyle=":", linewidth=1)
    ax.axvline(budget / 3, color="#888888", linestyle="--", linewidth=1, label="a third of the budget")
    ax.set_xlabel("finished trials (start order)")
    ax.set_ylabel("hypervolume (robust acc x -log10 size ratio)")
    ax.set_title("Search efficiency on digits, the study's space")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, out / "hypervolume")
    print("\n".join(lines))
    print(json.dumps({"target": target, "files": sorted(p.name for p in out.iterdir())}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/rcsweep-bench-search"), help="sweep folders")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "search")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=BUDGET)
    ap.add_argument("--searches", nargs="+", default=["grid", "tpe", "random"],
                    help="samplers to run (the grid once, the others per seed)")
    ap.add_argument("--summarise-only", action="store_true", help="only recompute the tables and figure")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.summarise_only:
        folders = {p.name: p for p in sorted(args.work.iterdir()) if (p / "results.csv").is_file()}
    else:
        folders = run_all(args.work, args.seeds, args.budget, args.searches)
    summarise(folders, args.out, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
