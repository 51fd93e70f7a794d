"""Search on a continuous space (issue 15): the default sampler against NSGA-II and random search,
3 objectives, hypervolume against finished trials.

The space (digits; eps_eval 0.2, L-inf, pixel units): standard or adversarial pretraining (one
pretrained model each, shared by the sweep's trials), structured pruning with ``sparsity`` in
[0.1, 0.9] or weight quantization with ``weight_bits`` 2 to 8 (8-bit activations), then adversarial
fine-tuning for ``finetune_epochs`` 1 to 5 at ``eps_finetune`` in [0.1, 0.3] (0.5x to 1.5x
eps_eval). Objectives: robust accuracy (max), model size in bits (min) and the route's training
compute ``flops_route`` (pretraining + fine-tuning FLOPs, min): a longer or adversarial route
costs more, so the search has a reason to prefer cheap fine-tuning. The 2 dense references
(standard and adversarial, no fine-tuning) run first and count in the budget.

Every sampler gets 40 trials, 2 at a time, search seeds 0, 1, 2; every trial trains with
``seed: 0``. Hypervolume is the analysis layer's (``analysis.compare``: robust accuracy on [0, 1];
-log10(model_bits / dense model_bits); 1 - flops_route / the largest flops_route of all sweeps
together), over finished trials in start order. Writes, in ``--out``: ``curves.csv``,
``summary.csv`` / ``summary.md`` (hypervolume at the checkpoints: mean [min, max] over seeds; the
default minus random at every budget from 15), ``hypervolume.png/.svg``, ``sweeps/NAME.csv`` (each
sweep's per-trial results).

    python benchmarks/bench_search_continuous.py --work runs/search_continuous --out docs/results/search/continuous
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_search import plot_seed_band, run_all  # noqa: E402

SPACE = {
    "pretrain": {"choice": ["standard", "adversarial"]},
    "compression": {"choice": ["prune_structured", "quant"]},
    "sparsity": {"uniform": [0.1, 0.9]},
    "weight_bits": {"int": [2, 8]},
    "finetune_epochs": {"int": [1, 5]},
    "eps_finetune": {"uniform": [0.1, 0.3]},
}
FIXED = {"dataset": "digits", "batch_size": 32, "pretrain_epochs": 10, "eps_eval": 0.2, "attack_steps": 5,
         "eval_restarts": 1, "finetune": "adversarial"}
REFERENCES = [{"pretrain": "adversarial", "compression": "none", "finetune": "none"},
              {"pretrain": "standard", "compression": "none", "finetune": "none"}]
OBJECTIVES = {"robust_acc": "max", "model_bits": "min", "flops_route": "min"}
BUDGET = 40
SAMPLERS = ("tpe_front", "nsga2", "random")  # tpe_front: rcsweep.samplers.DEFAULT (tpe before)
CHECKPOINTS = (10, 15, 20, 25, 30, 35, 40)
FROM = 15  # the default must lead random search at every budget from here on


def sweep_dict(search: str, seed: int, budget: int) -> dict:
    return {"name": f"{search}_s{seed}", "fixed": dict(FIXED), "space": SPACE, "references": REFERENCES,
            "search": search, "objectives": dict(OBJECTIVES), "num_samples": budget, "max_concurrent": 2,
            "resources": {"cpu": 1, "gpu": 0}, "search_seed": seed}


def summarise(folders: dict, out: Path, budget: int, default: str = SAMPLERS[0]) -> list[str]:
    import pandas as pd

    from analysis.compare import compare
    from analysis.style import PALETTE, figure, save
    from rcsweep.results import load_results

    objectives = ",".join(f"{k}:{v}" for k, v in OBJECTIVES.items())
    cmp = compare([str(f) for f in folders.values()], objectives)
    (out / "sweeps").mkdir(parents=True, exist_ok=True)
    for name, folder in folders.items():
        load_results(folder).to_csv(out / "sweeps" / f"{name}.csv", index=False)
    curves = pd.concat([c.assign(search=n.rsplit("_s", 1)[0], seed=int(n.rsplit("_s", 1)[1]))
                        for n, c in cmp.curves.items()], ignore_index=True)
    curves = curves[["search", "seed", "n_finished", "hypervolume"]]
    # a sweep with fewer finished trials than the budget keeps its last value (failed trials)
    full = []
    for (search, seed), g in curves.groupby(["search", "seed"], sort=False):
        g = g.set_index("n_finished").reindex(range(1, budget + 1)).ffill().fillna(0.0)
        full.append(g.assign(search=search, seed=seed).reset_index())
    curves = pd.concat(full, ignore_index=True)
    curves.to_csv(out / "curves.csv", index=False)
    mean = curves.groupby(["search", "n_finished"])["hypervolume"].mean()
    rows = []
    for search, g in curves.groupby("search", sort=False):
        row = {"search": search, "seeds": g["seed"].nunique()}
        for n in CHECKPOINTS:
            at = g[g["n_finished"] == n]["hypervolume"]
            row[f"hv@{n} mean"], row[f"hv@{n} min"], row[f"hv@{n} max"] = at.mean(), at.min(), at.max()
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)
    lines = ["| search | seeds | " + " | ".join(f"hv at {n}: mean [min, max]" for n in CHECKPOINTS) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in CHECKPOINTS) + " |"]
    for r in rows:
        lines.append(f"| {r['search']} | {r['seeds']} | " + " | ".join(
            f"{r[f'hv@{n} mean']:.4f} [{r[f'hv@{n} min']:.4f}, {r[f'hv@{n} max']:.4f}]" for n in CHECKPOINTS) + " |")
    searches = list(summary["search"])
    for other in [s for s in searches if s != default]:
        diff = {n: float(mean[(default, n)] - mean[(other, n)]) for n in range(FROM, budget + 1)}
        behind = [n for n, d in diff.items() if d < 0]
        lines += ["", f"{default} minus {other}, mean hypervolume, budgets {FROM}..{budget}: ahead at "
                  f"{sum(d > 0 for d in diff.values())}, equal at {sum(d == 0 for d in diff.values())}, behind at "
                  f"{len(behind)}{' (' + ', '.join(map(str, behind)) + ')' if behind else ''}; smallest difference "
                  f"{min(diff.values()):+.4f}."]
    lines += ["", "Reference values (all sweeps together): " + ", ".join(f"{k} {v:.4g}" for k, v in cmp.refs.items())]
    (out / "summary.md").write_text("\n".join(lines) + "\n")

    fig, ax = figure(6.4, 4.2)
    colors = dict(zip(searches, PALETTE))
    for search, g in curves.groupby("search", sort=False):
        plot_seed_band(ax, g, "n_finished", colors[search],
                       f"{search}{' (default)' if search == default else ''}, mean of {g['seed'].nunique()} seeds",
                       linestyle="--" if search == "random" else "-")
    ax.axvline(FROM, color="#888888", linestyle=":", linewidth=1, label=f"{FROM} trials: the default should lead from here")
    ax.set_xlabel("finished trials (start order)")
    ax.set_ylabel("hypervolume (robust acc, size, route FLOPs)")
    ax.set_title("Search on a continuous space (digits, 3 objectives; band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, out / "hypervolume")
    print("\n".join(lines))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/search_continuous"), help="sweep folders")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "search" / "continuous")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=BUDGET)
    ap.add_argument("--searches", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--summarise-only", action="store_true", help="only the tables and figure, from --work")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise_only:
        folders = {p.name: p for p in sorted(args.work.iterdir()) if (p / "results.csv").is_file()}
    else:
        folders = run_all(args.work, args.seeds, args.budget, tuple(args.searches), make=sweep_dict)
    summarise(folders, args.out, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
