"""Replay the samplers against the grid's table (issue 15): which sampler, with which options,
reaches the grid's hypervolume in the fewest trials? No training: every trial a sampler asks for
is answered from the grid sweep's per-configuration results.

The grid sweep of ``benchmarks/bench_search.py`` (digits, 54 points + 2 dense references, every
trial trained with ``seed: 0``) ran every configuration of the space once, so its ``results.csv``
(committed as ``docs/results/search/grid_trials.csv``) says what any search on that space would
have got for any configuration: a configuration gives the same model whichever search drew it.
This script drives the real :class:`rcsweep.sweep.search.SweepSearcher` in-process over the
benchmark's sweep (same space, references, budget 56, ``max_concurrent: 2``) for every sampler
variant and search seed: two trials in flight, the oldest completes first; a trial's result is the
table's row for its configuration (a failed row: ``collapsed.json`` written, completed with an
error, so the searcher treats it as deterministic); a trial's pretrained model counts as trained
(``pretrained/<id>/pretrain.json``) once the trial completes, which is what the searcher's
lookahead looks at. Each replay has its own sweep folder (the study's journal) in ``--work``.

Hypervolume is the analysis layer's (``analysis.pareto.hypervolume_curve``, as
``bench_search.py`` and ``analysis.compare`` compute it: robust accuracy on [0, 1], reference 0;
-log10(model_bits / dense model_bits); usable rows only: finished, not suspect / degenerate /
collapsed), after each trial in start order. The x axis counts trials run, a failed trial
included (it used one of the budget's trials); ``n_finished`` (the x axis of ``bench_search``)
is kept beside it. A replay whose space is exhausted before the budget stays flat.

Writes, in ``--out``: ``curves.csv`` (variant, seed, trial, hypervolume, distinct configurations so
far, n_finished; the grid's own curve in its fixed order as variant ``grid``), ``runs.csv`` (per
replay: trials run, repeats answered from earlier trials, wall time), ``summary.csv`` /
``summary.md`` (per variant: mean / min / max hypervolume at 10, 15, 19, 28, 38, 56 trials, seeds
reaching 99% of the grid's final hypervolume within 19 trials, mean trials to reach it),
``replay.png`` / ``.svg``.

    python benchmarks/replay_search.py                       # every variant, seeds 0..9 (GP: --gp-seeds)
    python benchmarks/replay_search.py --summarise-only      # tables and figure from curves.csv
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_search import BUDGET, plot_seed_band, sweep_dict  # noqa: E402  (the benchmark's space, references, budget)
from rcsweep.metrics_table import missing  # noqa: E402

TABLE = ROOT / "docs" / "results" / "search" / "grid_trials.csv"
OUT = ROOT / "docs" / "results" / "search" / "replay"
CHECKPOINTS = (10, 15, 19, 28, 38, 56)
GOAL_TRIALS = 19  # issue 15: a third of the grid's trials
GOAL_SHARE = 0.99
OBJECTIVES = "robust_acc:max,model_bits:min"

# variant name -> the sweep file's ``search:`` mapping. The sampler's own default first.
VARIANTS = {
    # the default: TPE's proposals ranked by optimistic hypervolume improvement (16 per suggestion;
    # startup: the 2 references + 1 random trial)
    "tpe_front": {"sampler": "tpe_front"},
    "tpe_front cand 8": {"sampler": "tpe_front", "n_candidates": 8},
    "tpe_front cand 32": {"sampler": "tpe_front", "n_candidates": 32},
    "tpe_front startup 2": {"sampler": "tpe_front", "n_startup_trials": 2},
    "tpe_front startup 3": {"sampler": "tpe_front", "n_startup_trials": 3},
    "tpe_front startup 4": {"sampler": "tpe_front", "n_startup_trials": 4},
    "tpe_front startup 8": {"sampler": "tpe_front", "n_startup_trials": 8},  # tpe's sizing at this budget
    "tpe": {"sampler": "tpe"},  # n_startup_trials sized from the budget: 8 here (references counted)
    "tpe startup 2": {"sampler": "tpe", "n_startup_trials": 2},  # the 2 references only
    "tpe startup 4": {"sampler": "tpe", "n_startup_trials": 4},
    "tpe startup 6": {"sampler": "tpe", "n_startup_trials": 6},
    "tpe startup 10": {"sampler": "tpe", "n_startup_trials": 10},
    "tpe univariate": {"sampler": "tpe", "multivariate": False},
    "tpe univariate startup 4": {"sampler": "tpe", "multivariate": False, "n_startup_trials": 4},
    "tpe no liar": {"sampler": "tpe", "constant_liar": False},
    "nsga2": {"sampler": "nsga2"},  # population sized from the budget: 11 here
    "nsga2 pop 4": {"sampler": "nsga2", "population_size": 4},
    "nsga2 pop 6": {"sampler": "nsga2", "population_size": 6},
    "nsga2 pop 20": {"sampler": "nsga2", "population_size": 20},
    "gp": {"sampler": "gp"},  # n_startup_trials 8, as TPE's
    "gp startup 4": {"sampler": "gp", "n_startup_trials": 4},
    "gp repeats 2": {"sampler": "gp", "max_repeats": 2},
    "random": {"sampler": "random"},
    # the searcher's bound on repeated suggestions before it issues the nearest configuration not
    # run (SweepSearcher.MAX_REPEATS, 20): not a sweep-file option
    "tpe repeats 5": {"sampler": "tpe", "max_repeats": 5},
    "tpe repeats 2": {"sampler": "tpe", "max_repeats": 2},
    "tpe repeats 1": {"sampler": "tpe", "max_repeats": 1},
    "tpe startup 2 repeats 2": {"sampler": "tpe", "n_startup_trials": 2, "max_repeats": 2},
    "tpe startup 4 repeats 2": {"sampler": "tpe", "n_startup_trials": 4, "max_repeats": 2},
    "nsga2 repeats 5": {"sampler": "nsga2", "max_repeats": 5},
    "tpe ei 200": {"sampler": "tpe", "n_ei_candidates": 200},
    "tpe ei 200 repeats 1": {"sampler": "tpe", "n_ei_candidates": 200, "max_repeats": 1},
    "tpe startup 2 ei 200 repeats 1": {"sampler": "tpe", "n_startup_trials": 2, "n_ei_candidates": 200, "max_repeats": 1},
    "tpe univariate startup 4 repeats 1": {"sampler": "tpe", "multivariate": False, "n_startup_trials": 4, "max_repeats": 1},
}


# -- the table -----------------------------------------------------------------------------------
def load_table(path=TABLE):
    """The per-trial CSV at ``path`` read as ``results.csv`` is (``rcsweep.results.load_results``)."""
    from rcsweep.results import RESULTS_FILE, load_results

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, Path(tmp) / RESULTS_FILE)
        return load_results(tmp)


def row_key(row) -> str:
    """The configuration key (``rcsweep.sweep.search.config_key``) of a results row, as the
    searcher's own ``_seed_from_results`` reads a row back."""
    from rcsweep.config import TrialConfig
    from rcsweep.sweep.search import config_key

    return config_key(TrialConfig.from_row(row))




@dataclass
class Table:
    """The grid's rows, by configuration key; ``refs``: the normalisation's reference values from
    all its usable rows (``analysis.compare`` takes them from every sweep compared; the default
    objectives need none)."""
    df: object
    by_key: dict

    @classmethod
    def of(cls, df):
        by_key = {}
        for i, row in df.iterrows():
            key = row_key(row)
            if key in by_key:
                raise ValueError(f"the table holds the configuration of row {by_key[key]} twice (row {i})")
            by_key[key] = i
        return cls(df, by_key)

    def result(self, i) -> dict:
        """What the trainable would report for row ``i``: its metrics and flags."""
        row = self.df.loc[i]
        return {k: row[k] for k in self.df.columns if not missing(row[k])}


def objectives():
    from analysis.pareto import parse_objectives

    return parse_objectives(OBJECTIVES)


def hv_curve(df, refs=None) -> list[tuple[float, int]]:
    """``[(hypervolume, n_finished)]`` after each row of ``df`` (start order), failed rows included:
    ``analysis.pareto.hypervolume_curve``'s computation, indexed by rows run instead of rows finished."""
    from analysis.pareto import hypervolume_curve

    curve = hypervolume_curve(df, objectives(), refs)  # per finished row
    hv = dict(zip(curve["n_finished"], curve["hypervolume"]))
    out, n_finished = [], 0
    for status in df["status"]:
        n_finished += status == "finished"
        out.append((float(hv.get(n_finished, 0.0)), n_finished))
    return out


# -- one replay ----------------------------------------------------------------------------------
def replay(data: dict, table: Table, folder: Path, concurrent: int = 2) -> dict:
    """Drive the sweep's searcher over ``data`` with ``concurrent`` trials in flight (the oldest
    completes first), answering each trial from ``table``. Returns ``{"rows": [table index per trial
    in start order], "keys": [...], "repeats": n, "exhausted": reason or None}``."""
    from ray.tune.search import Searcher

    from rcsweep.sweep.search import build_searcher
    from rcsweep.sweep.store import STORE_DIR
    from rcsweep.sweep.trainable import COLLAPSED_FILE, TRIALS_DIR
    from rcsweep.sweepfile import load_sweep

    data = dict(data, search=dict(data["search"]))
    max_repeats = data["search"].pop("max_repeats", None)  # the searcher's bound, a benchmark knob
    s = build_searcher(load_sweep(data)).searcher.searcher
    if max_repeats is not None:
        s.MAX_REPEATS = max_repeats
    s.set_search_properties(None, None, {"_sweep": {"dir": str(folder), "num_samples": s.limit}})
    rows, keys, live = [], [], []
    fallbacks = []  # trials issued as the nearest unseen configuration after MAX_REPEATS repeated suggestions (SweepSearcher._ask_unseen)
    ask_unseen = s._ask_unseen

    def counted_ask_unseen(**kw):
        found = ask_unseen(**kw)
        fallbacks.append(found is not None)
        return found

    s._ask_unseen = counted_ask_unseen

    def complete():
        tid, i = live.pop(0)
        pretrained = folder / STORE_DIR / s.live[tid]
        if table.df.at[i, "status"] == "failed":
            (folder / TRIALS_DIR / tid).mkdir(parents=True, exist_ok=True)
            (folder / TRIALS_DIR / tid / COLLAPSED_FILE).write_text("{}")
            s.on_trial_complete(tid, error=True)
        else:
            s.on_trial_complete(tid, table.result(i))
        pretrained.mkdir(parents=True, exist_ok=True)  # its trial trained (or loaded) the model
        (pretrained / "pretrain.json").write_text("{}")

    with contextlib.redirect_stderr(io.StringIO()):  # "search ended early" is read from s.exhausted
        for n in range(s.limit):
            out = s.suggest(f"t{n:03d}")
            while out is None:  # the searcher waits for a running trial (its sampler's startup)
                complete()
                out = s.suggest(f"t{n:03d}")
            if out == Searcher.FINISHED:
                break
            key = json.dumps(out["trial"], sort_keys=True, default=str)
            if key not in table.by_key:
                raise KeyError(f"trial {n}: configuration not in the table: {key}")
            rows.append(table.by_key[key])
            keys.append(key)
            live.append((f"t{n:03d}", rows[-1]))
            if len(live) >= concurrent:
                complete()
        while live:
            complete()
    return {"rows": rows, "keys": keys, "repeats": s.repeats, "fallbacks": sum(fallbacks), "exhausted": s.exhausted}


def replay_curve(variant: str, search: dict, seed: int, table: Table, work: Path, budget: int = BUDGET,
                 refs=None):
    """One replay's curve rows (trial 1 .. budget) and its run row."""
    import tempfile as _tf

    data = sweep_dict("replay", seed, budget)
    data["name"] = "replay"
    data["search"] = dict(search)
    t0 = time.perf_counter()
    with _tf.TemporaryDirectory(dir=work) as folder:
        got = replay(data, table, Path(folder))
    seconds = time.perf_counter() - t0
    ran = table.df.loc[got["rows"]].reset_index(drop=True)
    points = hv_curve(ran, refs)
    curve, seen = [], set()
    for n in range(1, budget + 1):
        if n <= len(points):
            seen.add(got["keys"][n - 1])
            hv, n_finished = points[n - 1]
        curve.append({"variant": variant, "seed": seed, "trial": n, "hypervolume": hv if points else 0.0,
                      "distinct": len(seen), "n_finished": n_finished if points else 0})
    run = {"variant": variant, "seed": seed, "trials_run": len(got["rows"]), "repeats": got["repeats"],
           "random_fallbacks": got["fallbacks"],
           "exhausted": got["exhausted"] or "", "seconds": round(seconds, 2)}
    return curve, run


# -- summary -------------------------------------------------------------------------------------
def trials_to(curve, target: float):
    """The first trial whose hypervolume reaches ``target`` (1e-9 relative slack), or None."""
    hit = curve[curve["hypervolume"] >= target * (1 - 1e-9)]
    return int(hit["trial"].min()) if len(hit) else None


def summarise(curves, runs, target: float, budget: int = BUDGET):
    """One row per variant (the grid's own first)."""
    import pandas as pd

    rows = []
    for variant, g in curves.groupby("variant", sort=False):
        by_seed = [c for _, c in g.groupby("seed")]
        reach = [trials_to(c, GOAL_SHARE * target) for c in by_seed]
        reach100 = [trials_to(c, target) for c in by_seed]
        row = {"variant": variant, "seeds": len(by_seed)}
        for n in CHECKPOINTS:
            at = g[g["trial"] == min(n, budget)]["hypervolume"]
            row[f"hv@{n} mean"], row[f"hv@{n} min"], row[f"hv@{n} max"] = at.mean(), at.min(), at.max()
        row[f"seeds 99% by {GOAL_TRIALS}"] = sum(r is not None and r <= GOAL_TRIALS for r in reach)
        got = [r for r in reach if r is not None]
        row["mean trials to 99%"] = sum(got) / len(got) if got else math.nan
        row["seeds never 99%"] = len(reach) - len(got)
        row["trials to 99% per seed"] = " ".join("-" if r is None else str(r) for r in reach)
        got100 = [r for r in reach100 if r is not None]
        row["mean trials to 100%"] = sum(got100) / len(got100) if got100 else math.nan
        row["seeds never 100%"] = len(reach100) - len(got100)
        r = runs[runs["variant"] == variant] if len(runs) else runs
        row["mean distinct trials"] = r["trials_run"].mean() if len(r) else math.nan
        row["mean repeats"] = r["repeats"].mean() if len(r) else math.nan
        row["mean random fallbacks"] = r["random_fallbacks"].mean() if len(r) and "random_fallbacks" in r else math.nan
        row["s per replay"] = r["seconds"].mean() if len(r) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def best_of_family(summary):
    """The best variant of each sampler (most seeds at 99% by 19 trials, then mean hv at 19)."""
    s = summary[summary["variant"] != "grid"].copy()
    s["family"] = s["variant"].str.split().str[0]
    s = s.sort_values([f"seeds 99% by {GOAL_TRIALS}", f"hv@{GOAL_TRIALS} mean"], ascending=False)
    return list(s.drop_duplicates("family")["variant"])


def beats(summary, a: str, b: str, budget: int = BUDGET, curves=None) -> dict:
    """Mean hypervolume of ``a`` minus ``b`` at every trial from 15 on (from ``curves``)."""
    mean = curves.groupby(["variant", "trial"])["hypervolume"].mean()
    return {n: float(mean[(a, n)] - mean[(b, n)]) for n in range(15, budget + 1)}


def write_summary(curves, runs, out: Path, target: float, argv: list, budget: int = BUDGET):
    import pandas as pd

    summary = summarise(curves, runs, target, budget)
    summary.to_csv(out / "summary.csv", index=False)
    best = best_of_family(summary)
    top = best[0]
    diff = beats(summary, top, "random", budget, curves)
    worst_n = min(diff, key=diff.get)
    lines = [f"Replay of the samplers against the grid's table (`grid_trials.csv`; no training). "
             f"Grid's final hypervolume: **{target:.4f}** (all 56 trials; 99% of it: {GOAL_SHARE * target:.4f}). "
             f"Budget {budget} trials, 2 in flight.", "",
             f"Best variant by seeds reaching 99% within {GOAL_TRIALS} trials (then mean hv at {GOAL_TRIALS}): "
             f"**{top}**. Mean hypervolume of {top} minus random's, trials 15..{budget}: smallest "
             f"{diff[worst_n]:+.4f} at trial {worst_n}; {sum(v > 0 for v in diff.values())} of {len(diff)} budgets ahead, "
             f"{sum(v == 0 for v in diff.values())} equal, {sum(v < 0 for v in diff.values())} behind.", "",
             f"| variant | seeds | " + " | ".join(f"hv at {n}: mean [min, max]" for n in CHECKPOINTS)
             + f" | seeds at 99% by {GOAL_TRIALS} | mean trials to 99% | trials to 99% per seed | mean trials to 100% (never) "
               "| distinct trials run | repeats answered | trials issued after repeats | s per replay |",
             "| --- | ---: | " + " | ".join("---:" for _ in CHECKPOINTS) + " | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for _, r in summary.iterrows():
        cells = " | ".join(f"{r[f'hv@{n} mean']:.4f} [{r[f'hv@{n} min']:.4f}, {r[f'hv@{n} max']:.4f}]"
                           for n in CHECKPOINTS)
        nan = lambda v, f: "-" if pd.isna(v) else format(v, f)  # noqa: E731
        lines.append(f"| {r['variant']} | {r['seeds']} | {cells} | {r[f'seeds 99% by {GOAL_TRIALS}']} of {r['seeds']} | "
                     f"{nan(r['mean trials to 99%'], '.1f')}{'' if not r['seeds never 99%'] else ' (' + str(r['seeds never 99%']) + ' never)'} | "
                     f"{r['trials to 99% per seed']} | {nan(r['mean trials to 100%'], '.1f')} ({r['seeds never 100%']}) | "
                     f"{nan(r['mean distinct trials'], '.1f')} | {nan(r['mean repeats'], '.1f')} | {nan(r['mean random fallbacks'], '.1f')} | "
                     f"{nan(r['s per replay'], '.1f')} |")
    lines += ["", "Columns: hypervolume after the n-th trial (start order, failed trials counted) over seeds; "
              f"seeds whose curve reached 99% of the grid's final within {GOAL_TRIALS} trials; the mean over the "
              "seeds that reached it (the others in brackets); the grid row is its fixed order, one 'seed'. "
              "'repeats answered': suggestions equal to a configuration already run, told its result instead of running; "
              "'issued after repeats': trials the searcher issued itself after `MAX_REPEATS` (20, or the variant's "
              "`max_repeats`) repeated suggestions in a row: the configuration not run yet nearest to the last "
              "repeated suggestion (the sampler's own choice no longer).",
              "", "Search options of each variant (the sweep file's `search:`):", ""]
    lines += [f"- {name}: `{json.dumps(VARIANTS.get(name, {}))}`" for name in summary["variant"] if name != "grid"]
    made = (out / "command.txt").read_text().strip() if (out / "command.txt").is_file() else shlex.join(argv)
    lines += ["", "Command (the curves; `--summarise-only` remakes the tables and figure from them):", "", "```bash",
              "PYTHONPATH=. RAY_AUTH_MODE=disabled python3 benchmarks/replay_search.py " + made, "```", ""]
    (out / "summary.md").write_text("\n".join(lines))
    return summary, best


def plot(curves, summary, best: list, out: Path, target: float, budget: int = BUDGET) -> None:
    from analysis.style import PALETTE, figure, save

    shown = [v for v in best if v != "random"][:4] + ["random"]
    fig, ax = figure(7.0, 4.4)
    grid = curves[curves["variant"] == "grid"]
    ax.plot(grid["trial"], grid["hypervolume"], color="#999999", linewidth=1, label="grid, fixed order")
    colors = dict(zip(shown, PALETTE[:len(shown) - 1] + ["#D55E00"]))
    for variant in shown:
        r = summary.set_index("variant").loc[variant]
        label = f"{variant}: {r[f'seeds 99% by {GOAL_TRIALS}']}/{r['seeds']} seeds at 99% by {GOAL_TRIALS}"
        plot_seed_band(ax, curves[curves["variant"] == variant], "trial", colors[variant], label,
                       linestyle="--" if variant == "random" else "-")
    ax.axhline(target, color="#444444", linestyle="--", linewidth=1, label=f"grid's final ({target:.3f})")
    ax.axvline(GOAL_TRIALS, color="#888888", linestyle=":", linewidth=1, label=f"{GOAL_TRIALS} trials (the goal)")
    ax.set_xlim(1, budget)
    ax.set_ylim(max(0.0, target * 0.5), target * 1.02)
    ax.set_xlabel("trials run (start order)")
    ax.set_ylabel("hypervolume (robust acc x -log10 size ratio)")
    ax.set_title(f"Samplers replayed on the digits grid (mean of seeds, band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower right")
    save(fig, out / "replay")


# -- real sweeps ----------------------------------------------------------------------------------
def real_sweeps(folders, table: Table, out: Path, target: float, refs, budget: int = BUDGET) -> list:
    """The curves of sweeps that trained every trial (``bench_search.py --searches tpe``), by
    the same measure as the replays: their ``results.csv`` copied to ``OUT/sweeps/NAME.csv`` (the
    per-trial record), ``OUT/real.md`` (per sweep: hypervolume at the checkpoints, trials to 99% of
    the grid's final, distinct configurations among its trials). Returns the curve rows (variant
    ``<sampler> (trained)``)."""
    import pandas as pd

    from rcsweep.results import load_results

    (out / "sweeps").mkdir(parents=True, exist_ok=True)
    rows, lines = [], ["| sweep | trials | distinct configurations | " + " | ".join(f"hv at {n}" for n in CHECKPOINTS)
                       + f" | trials to 99% of the grid's final | 99% within {GOAL_TRIALS} |",
                       "| --- | ---: | ---: | " + " | ".join("---:" for _ in CHECKPOINTS) + " | ---: | --- |"]
    for folder in map(Path, folders):
        df = load_results(folder)
        name = folder.name
        df.to_csv(out / "sweeps" / f"{name}.csv", index=False)
        keys = [row_key(r) for _, r in df.iterrows()]
        points = hv_curve(df, refs)
        sampler, seed = name.rsplit("_s", 1)
        curve = [{"variant": f"{sampler} (trained)", "seed": int(seed), "trial": n,
                  "hypervolume": points[min(n, len(points)) - 1][0], "distinct": len(set(keys[:n])),
                  "n_finished": points[min(n, len(points)) - 1][1]} for n in range(1, len(points) + 1)]
        rows += curve
        c = pd.DataFrame(curve)
        reach = trials_to(c, GOAL_SHARE * target * (1 - 1e-4))  # restarts differ in the last digits
        at = {n: (f"{c[c['trial'] == n]['hypervolume'].iloc[0]:.4f}" if n <= len(c) else "-") for n in CHECKPOINTS}
        lines.append(f"| {name} | {len(df)} | {len(set(keys))} | " + " | ".join(at[n] for n in CHECKPOINTS)
                     + f" | {reach or 'not within ' + str(len(df))} | {'yes' if reach and reach <= GOAL_TRIALS else 'no'} |")
    (out / "real.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


# -- main ----------------------------------------------------------------------------------------
def grid_curve(table: Table, budget: int, refs):
    points = hv_curve(table.df, refs)
    return [{"variant": "grid", "seed": 0, "trial": n, "hypervolume": points[min(n, len(points)) - 1][0],
             "distinct": min(n, len(points)), "n_finished": points[min(n, len(points)) - 1][1]}
            for n in range(1, budget + 1)]


def main(argv=None) -> int:
    import pandas as pd

    from analysis.pareto import hypervolume_curve, reference_values
    from rcsweep.results import split_usable

    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE, help="the grid's per-trial CSV (a results.csv)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--work", type=Path, default=None, help="where the replays' sweep folders go (default: a temp dir)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--gp-seeds", type=int, default=None, help="seeds for the GP variants (default: --seeds)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help="names from VARIANTS")
    ap.add_argument("--budget", type=int, default=BUDGET)
    ap.add_argument("--summarise-only", action="store_true", help="tables and figure from OUT/curves.csv")
    ap.add_argument("--real", type=Path, nargs="+", default=None,
                    help="sweep folders that trained every trial: measured as the replays, written to OUT/real.md")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    table = Table.of(load_table(args.table))
    objs = objectives()
    usable, _ = split_usable(table.df[table.df["status"] == "finished"], [o.column for o in objs])
    refs = reference_values(usable, objs)
    target = float(hypervolume_curve(table.df, objs, refs)["hypervolume"].iloc[-1])
    grid = grid_curve(table, args.budget, refs)
    if args.real:
        real = pd.DataFrame(real_sweeps(args.real, table, args.out, target, refs, args.budget))
        real.to_csv(args.out / "real_curves.csv", index=False)
        return 0
    if args.summarise_only:
        curves = pd.read_csv(args.out / "curves.csv")
        runs = pd.read_csv(args.out / "runs.csv")
    else:
        unknown = [v for v in args.variants if v not in VARIANTS]
        if unknown:
            ap.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
        # the journal fsyncs every write: on tmpfs (/dev/shm) that costs nothing
        shm = Path("/dev/shm")
        work = args.work or Path(tempfile.mkdtemp(prefix="rcsweep-replay-", dir=shm if shm.is_dir() else None))
        work.mkdir(parents=True, exist_ok=True)
        curve_rows, run_rows = list(grid), []
        for variant in args.variants:
            seeds = args.seeds[:args.gp_seeds] if VARIANTS[variant]["sampler"] == "gp" and args.gp_seeds else args.seeds
            t0 = time.perf_counter()
            for seed in seeds:
                curve, run = replay_curve(variant, VARIANTS[variant], seed, table, work, args.budget, refs)
                curve_rows += curve
                run_rows.append(run)
            at = [c["hypervolume"] for c in curve_rows if c["variant"] == variant and c["trial"] == GOAL_TRIALS]
            print(f"{variant}: {len(seeds)} seeds, {time.perf_counter() - t0:.0f} s, hv@{GOAL_TRIALS} mean "
                  f"{sum(at) / len(at):.4f}", flush=True)
        curves, runs = pd.DataFrame(curve_rows), pd.DataFrame(run_rows)
        curves.to_csv(args.out / "curves.csv", index=False)
        runs.to_csv(args.out / "runs.csv", index=False)
        (args.out / "command.txt").write_text(shlex.join(argv) + "\n")
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    summary, best = write_summary(curves, runs, args.out, target, argv, args.budget)
    plot(curves, summary, best, args.out, target, args.budget)
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
