"""``report.md`` for a sweep, with its figures beside it: the Pareto front, the study's tables
(accuracy per pretraining x compression level x fine-tuning, with spread over seeds and 95%
confidence intervals), robustness curves, compute per stage, suspect and failed trials, and
optionally the feature-map analysis of chosen trials (computed by the command layer,
:mod:`rcsweep.commands.features`, which ``rcsweep report --features`` hands to :func:`write_report`).
Numbers come from :mod:`analysis.tables` and :mod:`analysis.pareto`; this module only writes."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from rcsweep.errors import UserError
from rcsweep.fileio import atomic_write_text, make_folder
from rcsweep.rungs import stopped_summary

from . import plots
from .common import (compression_level, exclusion_counts, is_reference, load_sweep, n_test, pretrain_seconds, route,
                     split_usable, to_csv)
from .pareto import DEFAULT_OBJECTIVES, pareto_analysis
from .tables import (STAGE_ENERGY, accuracy_long, compression_curves, compute_table, energy_sources, flagged_rows,
                     recovery_table, robustness_curves, study_table, wilson_interval)


def md_table(df: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs tabulate, which we do not require)."""
    if df.empty:
        return "_none_\n"
    d = df.reset_index() if index else df
    cell = lambda v: (f"{v:.4g}" if isinstance(v, float) else str(v)).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, d.columns)) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _pct_ci(p, n) -> str:
    lo, hi = wilson_interval(p, n)
    return f"{100 * p:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" if lo == lo else f"{100 * p:.1f}"


def _front_table(result, ntest: pd.Series) -> pd.DataFrame:
    rows = []
    for i, r in result.front.iterrows():
        rows.append({"trial": r["trial_id"], "route": route(r), "compression": compression_level(r),
                     "clean acc % [95% CI]": _pct_ci(r["clean_acc"], ntest.get(i, math.nan)),
                     "robust acc % [95% CI]": _pct_ci(r["robust_acc"], ntest.get(i, math.nan)),
                     **{o.column: r[o.column] for o in result.objectives if not o.column.endswith("_acc")},
                     "size vs dense": f"1/{r['dense_model_bits'] / r['model_bits']:.3g}"
                     if r.get("model_bits") and r.get("dense_model_bits") == r.get("dense_model_bits") else ""})
    return pd.DataFrame(rows)


def energy_kind(sources: str) -> str:
    """How the energies in a table were obtained, for its headers: ``estimated``, ``measured``,
    ``measured or estimated`` (see the source column) or "" (none recorded)."""
    kinds = {"estimated" if s.startswith("estimate") else "measured" for s in sources.split("; ") if s}
    return " or ".join(sorted(kinds, reverse=True)) if kinds else ""


def energy_note(sources: str) -> str:
    """A sentence saying where the energies come from, estimates named as such."""
    if not sources:
        return "No energy was recorded (sweeps run before rcsweep measured it). "
    kind = energy_kind(sources)
    return (f"Energy ({kind}; `energy_source`: {sources}) is a RAPL or NVML counter where the machine has a readable "
            "one, otherwise an **estimate**: the CPU seconds of the trial's process x the sweep's "
            "`energy.cpu_watts` per busy core. ")


def _kwh(v) -> str:
    return f"{v:.3g}" if v == v else "–"


def _compute_md(t: pd.DataFrame) -> str:
    show = pd.DataFrame({"route, compression": t["label"]})
    for c, name in (("time_pretrain_s", "pretrain (s)"), ("time_compress_s", "compress (s)"),
                    ("time_finetune_s", "fine-tune (s)"), ("time_evaluate_s", "evaluate (s)")):
        if c in t:
            show[name] = t[c].map(lambda v: f"{v:.2f}")
    show["pretrain FLOPs"] = t["flops_pretrain"].map(lambda v: f"{v:.3g}")
    show["fine-tune FLOPs"] = t["flops_finetune"].map(lambda v: f"{v:.3g}")
    kind = energy_kind("; ".join(t["energy_source"]))
    for c, stage in zip(STAGE_ENERGY, ("pretrain", "compress", "fine-tune", "evaluate")):
        if c in t and kind:
            show[f"{stage} kWh ({kind})"] = t[c].map(_kwh)
    if " or " in kind:
        show["energy source"] = t["energy_source"]
    show["training FLOPs vs full adversarial training"] = t["flops_vs_full_adv"].map(
        lambda v: f"{v:.2f}x" if v == v else "–")
    show["robust acc %"] = t["robust_acc"].map(lambda v: f"{100 * v:.1f}")
    return md_table(show, index=False)


def _recovery_md(r: pd.DataFrame) -> str:
    ci = lambda row, k: (f"{100 * row[f'robust {k}']:.1f} [{100 * row[f'robust {k} ci_low']:.1f}, "  # noqa: E731
                         f"{100 * row[f'robust {k} ci_high']:.1f}]" if row[f"robust {k}"] == row[f"robust {k}"] else "–")
    show = pd.DataFrame({"compression": r["compression_level"], "seeds": r["n_seeds"],
                         **{k: [ci(row, k) for _, row in r.iterrows()] for k in ("std", "std+AFT", "adv", "adv+AFT")},
                         "std+AFT / adv": r["share of adv robustness"].map(lambda v: f"{100 * v:.0f}%"),
                         "AFT FLOPs / adv training": r["AFT flops / adv training"].map(lambda v: f"{v:.3f}"),
                         "AFT time / adv training": r["AFT time / adv training"].map(
                             lambda v: f"{v:.3f}" if v == v else "–")})
    kind = energy_kind("; ".join(r["energy_source"]))
    if kind:
        show[f"AFT energy / adv training ({kind})"] = r["AFT energy / adv training"].map(
            lambda v: f"{v:.3f}" if v == v else "–")
    return md_table(show, index=False)


def _verify_md(v: pd.DataFrame) -> list[str]:
    """The section on ``verify.csv`` (written by ``rcsweep verify``; see :mod:`rcsweep.commands.verify`)."""
    cols = ["trial_id", "n_test", "n_examples", "robust_acc_sweep", "robust_acc_rcsweep", "robust_acc_white_box",
            "robust_acc_independent", "gap", "suspect"]
    sus = v[v["suspect"].astype(str).str.lower() == "true"] if "suspect" in v else v.iloc[:0]
    attacks = ", ".join(map(str, v["attack"].unique())) if "attack" in v else "an independent attack"
    return ["## Independent robustness check\n",
            f"From `verify.csv`: each model attacked again with {attacks}, beside rcsweep's own evaluation on the "
            "same `n_examples` test images (`robust_acc_rcsweep`) and the sweep's number (`robust_acc_sweep`, on "
            "`n_test` images). Quantized models are also attacked by transfer from their float twin (the same "
            "weights, activations not quantized): `robust_acc_white_box` is the independent number without it. "
            "`gap` = rcsweep's minus the independent robust accuracy. A model is suspect when "
            "rcsweep's number (or the sweep's, allowing for a subset's sampling error) is more than 1 point above "
            "the independent one.\n", md_table(v[[c for c in cols if c in v]], index=False),
            "### Suspect after the independent check\n",
            md_table(sus[[c for c in ("trial_id", "suspect_reason") if c in sus]], index=False)]


def _stopped_md(df) -> list[str]:
    """The *Stopped early* section: each early-stopped trial's route, the rung it reached, its
    screening there and why it stopped; [] when none was."""
    rows = df[df["status"] == "early_stopped"]
    if rows.empty:
        return []
    cols = [c for c in ("trial_id", "pretrain", "compression", "sparsity", "weight_bits", "finetune", "screen_rung",
                        "screen_clean_acc", "screen_robust_acc", "early_stopped_reason") if c in rows]
    table = rows[cols].rename(columns={"screen_rung": "rung", "early_stopped_reason": "reason"})
    return ["## Stopped early\n", "Trials early stopping ended at a rung (fine-tuning epochs done; 0: the compressed "
            "model), with their screening there (clean and PGD accuracy on the screened `val` images, never `test`) "
            "and the decision; they are left out of the front and the tables. " + stopped_summary(df) + ".\n",
            md_table(table, index=False)]


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _reevaluate_md(r: pd.DataFrame) -> list[str]:
    """The section on ``reevaluate.csv`` (written by ``rcsweep reevaluate``; see :mod:`rcsweep.commands.reevaluate`)."""
    cols = ["trial_id", "clean_acc_before", "clean_acc", "robust_acc_before", "robust_acc", "change", "suspect"]
    attacks = [f"`{a}` -> `{b}` ({_trials(n)})" for (a, b), n in r.groupby(["attack_before", "attack"]).size().items()]
    return ["## Re-evaluated trials\n",
            "From `reevaluate.csv`: trials evaluated again on their saved models with the evaluation code installed "
            "later (no training). The numbers above are the new ones; the old ones stay in each record's "
            "`reevaluations`. Attacks: " + "; ".join(attacks) + ".\n",
            md_table(r[[c for c in cols if c in r]], index=False)]


def weak_eval_trials(folder, df: pd.DataFrame) -> pd.DataFrame:
    """Finished trials whose evaluation budget was below the documented floor (APGD ``eval_steps``
    >= 20, ``eval_restarts`` >= 2: :func:`rcsweep.evaluate.eval_budget_warning`), with the reason:
    ``evaluation.weak_eval`` of the trial's ``record.json``, else a ``weak_eval`` flag in its
    ``flags`` column, else (records written before the floor existed) its ``eval_steps`` and
    ``eval_restarts`` checked against the floor. Columns: trial_id, eval_steps, eval_restarts, reason."""
    import json

    from rcsweep.evaluate import eval_budget_warning  # torch, only here
    from rcsweep.trial_status import row_flags

    from .common import trial_dir

    out = []
    for _, r in df[df["status"] == "finished"].iterrows():
        try:
            ev = json.loads((trial_dir(folder, r["trial_id"]) / "record.json").read_text()).get("evaluation") or {}
        except (OSError, ValueError, UnicodeDecodeError):
            ev = {}
        reason = str(ev.get("weak_eval") or "")
        if not reason and "weak_eval" in row_flags(r):
            why = r.get("weak_eval_reason")
            reason = why if isinstance(why, str) and why else "weak_eval flag"
        if not reason and "weak_eval" not in ev and pd.notna(r.get("eval_steps")) and pd.notna(r.get("eval_restarts")):
            reason = eval_budget_warning(int(r["eval_steps"]), int(r["eval_restarts"]))
        if reason:
            out.append({"trial_id": r["trial_id"], "eval_steps": r.get("eval_steps"),
                        "eval_restarts": r.get("eval_restarts"), "reason": reason})
    return pd.DataFrame(out, columns=["trial_id", "eval_steps", "eval_restarts", "reason"])


def _weak_eval_md(weak: pd.DataFrame, n_finished: int) -> list[str]:
    """The section counting trials evaluated below the evaluation floor (:func:`weak_eval_trials`)."""
    if not len(weak):
        return ["## Evaluation budget\n", f"All {n_finished} finished trials were evaluated at or above the "
                "evaluation floor (APGD 20 steps x 2 restarts).\n"]
    md = ["## Evaluation budget\n",
          f"{len(weak)} of {n_finished} finished trials were evaluated below the evaluation floor (APGD 20 steps "
          "x 2 restarts; flag `weak_eval`): their robust accuracy may be overstated. They are not left out of the "
          "front or the tables above.\n"]
    groups = weak.groupby(["eval_steps", "eval_restarts", "reason"], dropna=False)["trial_id"].agg(list).reset_index()
    groups.insert(3, "trials", groups["trial_id"].map(len))
    groups["trial_id"] = groups["trial_id"].map(lambda ids: ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else ""))
    return md + [md_table(groups, index=False)]


def write_report(folder, out_dir=None, objectives=DEFAULT_OBJECTIVES, by: str | None = "finetune",
                 features: Optional[Callable[[Path], object]] = None) -> Path:
    """Write ``out_dir/report.md`` (default ``folder/report``) and its figures; returns its path.

    ``features``: a function given the stem ``out_dir/features`` that writes the feature-map
    figures there (``features.png``, ``features_maps.png``; ``rcsweep report --features`` passes
    :func:`rcsweep.commands.features.run_features` for the chosen trials); the report then shows them."""
    folder = Path(folder)
    out = Path(out_dir) if out_dir else folder / "report"
    df = load_sweep(folder)
    usable, excluded = split_usable(df, ["clean_acc", "robust_acc"])
    if usable.empty:
        raise UserError(f"no usable finished trials in {folder} (statuses: "
                        f"{', '.join(f'{n} {s}' for s, n in df['status'].value_counts().items()) or 'none'})")
    make_folder(out, "--out")
    ntest = n_test(folder, df)
    status = df["status"].value_counts()
    flagged = flagged_rows(excluded)
    counts = exclusion_counts(excluded[excluded["status"] == "finished"])
    left_out = ", ".join(f"{n} {k}" for k, n in counts.items())
    if left_out:
        left_out = f"{_trials(len(flagged))} ({left_out}{'; a trial can carry several flags' if sum(counts.values()) > len(flagged) else ''})"
    eps = plots.eps_text(usable)
    md = [f"# Sweep report: {folder.resolve().name}\n",
          f"{_trials(len(df))}: {status.get('finished', 0)} finished ({len(usable)} used here"
          f"{'; left out: ' + left_out if left_out else ''}), "
          f"{status.get('failed', 0)} failed, {status.get('running', 0)} running"
          f"{'; ' + stopped_summary(df) if stopped_summary(df) else ''}. "
          f"Datasets: {', '.join(map(str, usable['dataset'].unique()))}; models: "
          f"{', '.join(map(str, usable['model'].unique()))}; test images per evaluation: "
          f"{', '.join(str(int(n)) for n in sorted(ntest[usable.index].dropna().unique()))}.\n"]

    res = pareto_analysis(df, objectives, by=by)
    plots.plot_pareto(res, out / "pareto")
    to_csv(res.front, out / "pareto.csv")
    projections = (f"With {len(res.objectives)} objectives the figure shows the front in one panel per pair of "
                   "objectives; filled points are on the front over all of them. ") if len(res.objectives) > 2 else ""
    md += [f"## Pareto front ({', '.join(map(str, res.objectives))})\n", "![Pareto front](pareto.png)\n",
           projections +
           f"Hypervolume **{res.hypervolume:.4f}** ({'; '.join(f'{k}: {v}' for k, v in res.normalisation.items())}). "
           f"Reference models (stars): {', '.join(res.references['trial_id']) or 'none'}.\n",
           md_table(_front_table(res, ntest), index=False)]

    long = accuracy_long(usable, ntest)
    to_csv(long, out / "study_accuracy.csv")
    md += ["## The study's tables\n",
           "Cells: mean accuracy in % ± standard deviation over seeds (with several), [95% Wilson interval "
           "for the test-set size at that mean], (number of seeds). Flagged trials (suspect, degenerate, invalid) "
           "and repeated configurations (see *Flagged trials*) are left out.\n"]
    for metric, name in (("robust_acc", f"Robust accuracy{eps}"), ("clean_acc", "Clean accuracy")):
        md += [f"### {name} (%), by fine-tuning\n", md_table(study_table(long, metric))]

    fig1 = compression_curves(usable)
    if fig1["n_seeds"].gt(0).any() and fig1.groupby(["route", "axis"]).size().max() > 1:
        to_csv(fig1, out / "compression_curves.csv")
        plots.plot_compression_curves(fig1, out / "compression_curves", eps)
        shown = plots.varied_axes(fig1)
        against = " and against ".join({"sparsity": "structured sparsity",
                                         "weight_bits": "weight bits (8-bit activations)"}[a] for a in shown)
        seeds = ("mean over seeds with a ±1 standard deviation band" if fig1["n_seeds"].max() > 1
                 else "one seed (no band)")
        dense = (fig1["axis"].eq("sparsity") & fig1["x"].eq(0)) | (fig1["axis"].eq("weight_bits") & fig1["x"].eq(32))
        md += ["## Accuracy against compression\n", "![Accuracy against compression](compression_curves.png)\n",
               f"Clean and robust accuracy against {against}, one line per training route, {seeds} "
               f"(`compression_curves.csv`)"
               + ("; the dense model is the point at sparsity 0 and at 32 bits.\n" if dense.any() else ".\n")]

    curves = robustness_curves(usable)
    has_curve = "robust_acc_curve" in usable and usable["robust_acc_curve"].map(lambda v: bool(v)).any()
    if not curves.empty and has_curve:  # without eps_curve each "curve" has two points: not drawn
        to_csv(curves, out / "robustness_curves.csv")
        plots.plot_robustness_curves(curves, out / "robustness", eps_eval=float(usable["eps_eval"].iloc[0])
                                     if usable["eps_eval"].nunique() == 1 else None, norm=str(usable["norm"].iloc[0]))
        md += ["## Robustness curves\n", "![Robustness curves](robustness.png)\n",
               "Accuracy under the evaluation attack against ε (ε = 0 is the clean accuracy), mean over seeds; "
               "a band is ±1 standard deviation where there are several seeds.\n"]

    comp = compute_table(usable)
    to_csv(comp, out / "compute.csv")
    md += ["## Compute\n", "Mean wall-clock time, energy (kWh) and estimated training FLOPs (2 x MACs x 3 for "
           "forward and backward, x (1 + attack steps) for adversarial examples) per stage. "
           "\"Full adversarial training\" is adversarial pretraining without fine-tuning, at the same compression "
           "level (else dense). A trial that reused a shared pretrained model shows that model's pretraining time "
           "only if the sweep recorded it; its pretraining energy, like its FLOPs, is the whole pretraining's. "
           + energy_note(energy_sources(usable)) + "\n", _compute_md(comp)]

    rec = recovery_table(usable, ntest, pretrain_seconds(folder, usable))
    if not rec.empty:
        to_csv(rec, out / "recovery.csv")
        md += ["## Adversarial fine-tuning against adversarial training\n",
               "Per compression level: robust accuracy % [95% CI] of the standard model compressed (std), then "
               "adversarially fine-tuned (std+AFT), and of the adversarially pretrained model compressed (adv) and "
               "fine-tuned (adv+AFT); the share of adv's robust accuracy std+AFT reaches; and the cost of the "
               "adversarial fine-tuning against full adversarial training (the adversarial pretraining), in "
               "training FLOPs, wall time (pretraining time summed from its epochs) and energy. "
               + energy_note("; ".join(sorted({x for s in rec["energy_source"] for x in s.split("; ") if x}))) + "\n", _recovery_md(rec)]

    md += ["## Flagged trials\n", "Finished trials left out of the front and the tables above, with the flag and "
           "its reason: `suspect` (a gradient-masking check failed, or `rcsweep verify` found the robust accuracy "
           "more than 1 point too high), `degenerate` (clean accuracy within the 95% binomial interval of chance or "
           "of the majority-class rate, or a single predicted class), `invalid` (a non-finite or out-of-range "
           "metric in results.csv); and `repeat`, a trial with the same configuration (every parameter, the seed "
           "included) as an earlier usable trial, which counts in its place. "
           + (f"Counts: {left_out}.\n" if left_out else "None.\n")]
    if len(flagged):
        md.append(md_table(flagged, index=False))
    md += _weak_eval_md(weak_eval_trials(folder, df), int(status.get("finished", 0)))
    md += _stopped_md(df)
    failed = df[df["status"] == "failed"][["trial_id", "error"]]
    md += ["## Failed trials\n", md_table(failed, index=False)]
    if (folder / "verify.csv").is_file():
        md += _verify_md(pd.read_csv(folder / "verify.csv", dtype={"trial_id": str}))

    if (folder / "reevaluate.csv").is_file():
        md += _reevaluate_md(pd.read_csv(folder / "reevaluate.csv", dtype={"trial_id": str}, keep_default_na=False))

    if features is not None:
        features(out / "features")
        md += ["## Feature maps\n", "![Layer change](features.png)\n", "![Activation maps](features_maps.png)\n"]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md))
    return path


def representative_trials(df: pd.DataFrame, limit: int = 6) -> list[str]:
    """One usable trial (lowest seed) per route x compression method, references first."""
    usable, _ = split_usable(df, ["robust_acc"])
    usable = usable.assign(_ref=~is_reference(usable), _route=[route(r) for _, r in usable.iterrows()])
    picked = usable.sort_values(["_ref", "seed"], kind="stable").drop_duplicates(["_route", "compression"])
    return list(picked["trial_id"][:limit])

