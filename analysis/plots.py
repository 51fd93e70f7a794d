"""Drawing only: every function takes data computed elsewhere in :mod:`analysis` and writes
``<stem>.png`` and ``<stem>.svg``, in the shared look of :mod:`analysis.style` (fixed colour per
group value, markers and line styles that repeat the grouping so nothing relies on colour alone,
units on every axis, sizes on log axes, accuracies in percent, reference models as stars).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rcsweep.pareto import objective_pairs

from .style import (GROUP_COLORS, LINESTYLES, MARKERS, PALETTE, colors_for, compression_linestyle,
                    default_objectives, eps_text, figure, route_marker, save, setup_axes, shown)

__all__ = ["eps_text", "plot_activation_grid", "plot_compare", "plot_layer_change", "plot_pareto",
           "plot_pareto_projections", "plot_robustness_curves"]


def draw_front(ax, front, objectives, color, label, marker="o", linestyle="-", hollow=False, size=42):
    """A front as markers joined by its attainment staircase (first two objectives)."""
    xo, yo = objectives[1], objectives[0]
    f = front.sort_values(xo.column)
    x, y = shown(xo.column, f[xo.column]), shown(yo.column, f[yo.column])
    ax.step(x, y, where="post" if xo.direction == "min" else "pre", color=color, linestyle=linestyle, lw=1.6, alpha=0.9)
    ax.scatter(x, y, s=size, marker=marker, facecolors="none" if hollow else color, edgecolors=color, lw=1.4,
               label=label, zorder=3)


def draw_references(ax, refs, objectives, names):
    xo, yo = objectives[1], objectives[0]
    named = set()  # one label per name (references repeated over seeds sit on top of each other)
    for (_, r), name in zip(refs.iterrows(), names):
        x, y = shown(xo.column, [r[xo.column]])[0], shown(yo.column, [r[yo.column]])[0]
        ax.scatter([x], [y], s=190, marker="*", facecolors=GROUP_COLORS["pretrain"].get(r.get("pretrain"), "white"),
                   edgecolors="black", lw=1.0, zorder=4)
        if name not in named:
            ax.annotate(name, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=8)
            named.add(name)
    if len(refs):
        ax.scatter([], [], s=150, marker="*", facecolors="white", edgecolors="black", label="reference models")


def draw_trials(ax, result, xo, yo):
    """Every usable trial of a :class:`analysis.pareto.ParetoResult` in grey and the finished ones a
    flag or a repeat keeps out as crosses, on ``xo`` (x) against ``yo`` (y)."""
    u = result.usable
    ax.scatter(shown(xo.column, u[xo.column]), shown(yo.column, u[yo.column]), s=14, color="#999999", alpha=0.6,
               label=f"finished trials ({len(u)})", zorder=2)
    ex = result.excluded
    sus = ex[(ex["status"] == "finished") & ~ex["reason"].str.startswith("missing")]
    sus = sus.dropna(subset=[xo.column, yo.column])
    if len(sus):
        kinds = "/".join(sorted(sus["reason"].str.split(":").str[0].unique()))
        ax.scatter(shown(xo.column, sus[xo.column]), shown(yo.column, sus[yo.column]), s=30, marker="x",
                   color="#555555", label=f"{kinds}, excluded ({len(sus)})", zorder=2)


def plot_pareto(result, stem, title: str | None = None) -> list[Path]:
    """The front of a :class:`analysis.pareto.ParetoResult`: all usable trials, suspect ones
    (excluded), the overall front, group fronts, reference models. Two objectives: one panel;
    three or more: :func:`plot_pareto_projections`."""
    from .common import reference_name

    objs = result.objectives
    if len(objs) > 2:
        return plot_pareto_projections(result, stem, title)
    yo, xo = objs[0], objs[1]
    fig, ax = figure(7.2, 4.8)
    draw_trials(ax, result, xo, yo)
    if result.by:  # the overall front as rings behind the group fronts' filled markers
        draw_front(ax, result.front, objs, "black", f"overall front (HV {result.hypervolume:.3f})", hollow=True,
                   linestyle="--", size=110)
        colors = colors_for(result.by, list(result.group_fronts))
        for i, (key, f) in enumerate(result.group_fronts.items()):
            draw_front(ax, f, objs, colors[key], f"{result.by}={key} (HV {result.group_hypervolume[str(key)]:.3f})",
                       marker=_group_marker(result.by, key, i), linestyle=LINESTYLES[(i + 1) % len(LINESTYLES)])
    else:
        draw_front(ax, result.front, objs, "black", f"front (HV {result.hypervolume:.3f})")
    refs = result.references
    draw_references(ax, refs, objs, [reference_name(r) for _, r in refs.iterrows()])
    setup_axes(ax, xo.column, yo.column, eps_text(result.usable))
    ax.set_title(title or f"Pareto front: {yo} vs {xo}", fontsize=10)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    return save(fig, stem)


def _group_marker(by: str, key, i: int) -> str:
    return MARKERS.get(key, "o") if by == "compression" else "osD^vP"[i % 6]


def plot_pareto_projections(result, stem, title: str | None = None) -> list[Path]:
    """A front over three or more objectives, one panel per pair of objectives
    (:func:`rcsweep.pareto.objective_pairs`: 3 panels for 3 objectives, 6 for 4), three to a row:
    every usable trial in grey, excluded ones as crosses, the points of the front over *all*
    objectives filled (coloured by ``result.by`` where set) and the reference models as stars. No
    staircase: a front's projection is not a front, and a point that looks dominated in one panel
    is better in an objective the panel does not show."""
    import matplotlib.pyplot as plt

    from .common import reference_name

    objs, front = result.objectives, result.front
    pairs = objective_pairs(objs)
    ncols = min(len(pairs), 3)
    nrows = -(-len(pairs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.9 * nrows + 0.5), squeeze=False,
                             layout="constrained")
    eps = eps_text(result.usable)
    keys = front[result.by].astype(str) if result.by else None
    groups = [str(k) for k in result.group_fronts] if result.by else [None]  # markers as in the 2-D figure
    colors = colors_for(result.by, groups) if result.by else {None: "black"}
    refs = result.references
    names = [reference_name(r) for _, r in refs.iterrows()]
    for ax, (yo, xo) in zip(axes.flat, pairs):
        draw_trials(ax, result, xo, yo)
        for i, key in enumerate(groups):
            f = front[keys == key] if result.by else front
            if f.empty:
                continue
            label = f"on the front, {result.by}={key} ({len(f)})" if result.by else f"on the front ({len(f)})"
            ax.scatter(shown(xo.column, f[xo.column]), shown(yo.column, f[yo.column]), s=48,
                       marker=_group_marker(result.by, key, i) if result.by else "o", color=colors[key],
                       edgecolors="black", lw=0.6, label=label, zorder=3)
        draw_references(ax, refs, [yo, xo], names)
        setup_axes(ax, xo.column, yo.column, eps)
        _thin_log_labels(ax)
        ax.set_title(f"{yo.column} vs {xo.column}", fontsize=9)
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    fig.suptitle(title or f"Pareto front over {len(objs)} objectives ({', '.join(map(str, objs))}; HV "
                 f"{result.hypervolume:.3f}), one panel per pair of objectives", fontsize=10)
    return save(fig, stem)


def _thin_log_labels(ax, decades: float = 1.5):
    """No 2 and 5 x 10^k labels on a log axis spanning more than ``decades``: in a narrow panel they
    run into each other."""
    from matplotlib.ticker import NullFormatter

    for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log" and min(lim) > 0 and np.log10(max(lim) / min(lim)) > decades:
            axis.set_minor_formatter(NullFormatter())


def plot_compare(fronts: dict, curves: dict, objectives, stem, eps: str = "") -> list[Path]:
    """Left: the sweeps' fronts overlaid; right: hypervolume against the number of finished trials.
    ``fronts``/``curves``: sweep name -> front DataFrame / hypervolume_curve DataFrame."""
    fig, (ax, ax2) = figure(11.5, 4.4, ncols=2)
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(fronts)}
    for i, (name, f) in enumerate(fronts.items()):
        draw_front(ax, f, objectives, colors[name], name, marker="osD^vP"[i % 6], linestyle=LINESTYLES[i % 6])
    setup_axes(ax, objectives[1].column, objectives[0].column, eps)
    ax.set_title("Pareto fronts", fontsize=10)
    ax.legend(fontsize=8)
    for i, (name, c) in enumerate(curves.items()):
        ax2.step(c["n_finished"], c["hypervolume"], where="post", color=colors[name], linestyle=LINESTYLES[i % 6],
                 lw=1.8, label=f"{name} (final {c['hypervolume'].iloc[-1]:.3f})" if len(c) else name)
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("finished trials (count, in start order)")
    ax2.set_ylabel("hypervolume (accuracy x decades smaller than dense)" if default_objectives(objectives)
                   else "hypervolume (normalised as in the .json beside)")
    ax2.set_title("Hypervolume as the sweep runs", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return save(fig, stem)


def plot_robustness_curves(curves, stem, eps_eval=None, norm: str = "linf") -> list[Path]:
    """Accuracy against epsilon, one panel per compression method, one line per training route
    (its fixed colour) and compression level (named at the line's end where a panel has several);
    ``curves`` from :func:`analysis.tables.robustness_curves` (columns label, route,
    compression_level, eps, mean, std, n). Band: +-1 standard deviation over seeds."""
    import matplotlib.pyplot as plt

    curves = curves.assign(method=curves["compression_level"].str.split().str[0])
    methods = list(dict.fromkeys(curves["method"]))
    ncols = 2 if len(methods) == 4 else min(len(methods), 3)
    nrows = -(-len(methods) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols + 1.2, 3.4 * nrows), sharey=True, squeeze=False,
                             layout="constrained")
    colors = colors_for("route", curves["route"])
    for ax, method in zip(axes.flat, methods):
        panel = curves[curves["method"] == method]
        several = panel["compression_level"].nunique() > 1
        for (rname, level), c in panel.groupby(["route", "compression_level"], sort=False):
            c = c.sort_values("eps")
            y, s = c["mean"].to_numpy() * 100, c["std"].fillna(0).to_numpy() * 100
            ax.plot(c["eps"], y, color=colors[rname], marker=route_marker(rname), ms=4, lw=1.6,
                    linestyle=compression_linestyle(level))
            if (c["n"] > 1).any():
                ax.fill_between(c["eps"], y - s, y + s, color=colors[rname], alpha=0.15, lw=0)
            if several:
                ax.annotate(level[len(method):].strip(), (c["eps"].iloc[-1], y[-1]), xytext=(3, 0),
                            textcoords="offset points", fontsize=6, color=colors[rname], va="center")
        if eps_eval is not None:
            ax.axvline(eps_eval, color="#999999", linestyle=":", lw=1)
        ax.set_title(f"compression: {method}" if several else f"compression: {panel['compression_level'].iloc[0]}",
                     fontsize=9)
        ax.set_xlabel(f"ε ({'L∞' if norm == 'linf' else 'L2'}, pixel units of [0, 1] images)", fontsize=8)
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy under attack (%)")
    handles = [plt.Line2D([], [], color=c, marker=route_marker(r), label=r) for r, c in colors.items()]
    if eps_eval is not None:
        handles.append(plt.Line2D([], [], color="#999999", linestyle=":", label=f"eps_eval = {eps_eval:.3g}"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="training route", title_fontsize=8)
    fig.suptitle("Robustness curves (mean over seeds; ε = 0 is clean accuracy)", fontsize=10)
    return save(fig, stem)


def plot_layer_change(changes, stem, eps_label: str = "") -> list[Path]:
    """Relative change of each layer's activations, ||f(x_adv) - f(x)|| / ||f(x)||, across layers;
    ``changes`` from :func:`rcsweep.commands.features.layer_changes` (one line per trial)."""
    fig, ax = figure(7.2, 4.4)
    colors = colors_for("route", changes["route"])
    for label, c in changes.groupby("label", sort=False):
        c = c.sort_values("layer_index")
        r = c.iloc[0]
        ax.errorbar(c["layer_index"], c["rel_change"], yerr=c["rel_change_sem"], color=colors[r["route"]],
                    linestyle=compression_linestyle(r["compression_level"]), marker=route_marker(r["route"]),
                    ms=5, lw=1.6, capsize=2, label=label)
    first = changes[changes["label"] == changes["label"].iloc[0]].sort_values("layer_index")
    ax.set_xticks(first["layer_index"], first["layer"], rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("layer (input side -> output side)")
    ax.set_ylabel("relative change ||f(x_adv) - f(x)|| / ||f(x)|| (ratio)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"How far an adversarial example moves each layer's features{eps_label}", fontsize=10)
    ax.legend(fontsize=7)
    return save(fig, stem)


def plot_activation_grid(maps, stem) -> list[Path]:
    """Input (clean, adversarial, perturbation) and, per channel, its map on the clean input, on the
    adversarial input and their difference; ``maps`` from :func:`rcsweep.commands.features.activation_maps`."""
    import matplotlib.pyplot as plt

    chans = maps["channels"]
    fig, axes = plt.subplots(len(chans) + 1, 3, figsize=(6.6, 2.0 * (len(chans) + 1)), layout="constrained")
    x, xa, delta = maps["x"], maps["x_adv"], maps["delta"]
    lim = float(np.abs(delta).max()) or 1.0
    panels = [(x, "gray", 0, 1, f"clean input (label {maps['label']}, pred {maps['pred_clean']})"),
              (xa, "gray", 0, 1, f"adversarial input (pred {maps['pred_adv']})"),
              (delta, "PuOr", -lim, lim, f"perturbation (max |δ| {lim:.3g})")]
    for ax, (img, cmap, lo, hi, title) in zip(axes[0], panels):
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    for row, c in zip(axes[1:], chans):
        a, b = maps["clean"][c], maps["adv"][c]
        hi = float(max(a.max(), b.max(), 1e-12))
        d = b - a
        dl = float(np.abs(d).max()) or 1.0
        for ax, img, cmap, lo, top, title in ((row[0], a, "viridis", 0, hi, f"channel {c}: clean"),
                                              (row[1], b, "viridis", 0, hi, f"channel {c}: adversarial"),
                                              (row[2], d, "PuOr", -dl, dl, f"channel {c}: adv - clean")):
            im = ax.imshow(img, cmap=cmap, vmin=min(lo, float(img.min())), vmax=top)
            ax.set_title(title, fontsize=7)
            fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{maps['title']}: activations of {maps['layer']} (pixels; colour = activation value)", fontsize=8)
    return save(fig, stem)


def plot_compression_curves(curves, stem, eps: str = "") -> list[Path]:
    """The study's Figure 1: clean (top) and robust (bottom) accuracy against structured sparsity
    (left) and weight bits (right), one line per training route, a band of ±1 standard deviation
    over seeds where there are several; ``curves`` from :func:`analysis.tables.compression_curves`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), layout="constrained", sharey="row")
    colors = colors_for("route", curves["route"])
    for col, axis in enumerate(("sparsity", "weight_bits")):
        for row, metric in enumerate(("clean_acc", "robust_acc")):
            ax = axes[row, col]
            c = curves[(curves["axis"] == axis) & (curves["metric"] == metric)]
            for rt, g in c.groupby("route", sort=False):
                g = g.sort_values("x")
                x = g["x"] * 100 if axis == "sparsity" else g["x"]
                ax.plot(x, g["mean"] * 100, color=colors[rt], marker=route_marker(rt), ms=5, lw=1.6, label=rt)
                band = g["std"].fillna(0) * 100
                ax.fill_between(x, g["mean"] * 100 - band, g["mean"] * 100 + band, color=colors[rt], alpha=0.15, lw=0)
            if axis == "weight_bits":
                ax.set_xscale("log", base=2)
                ticks = sorted(c["x"].unique())
                ax.set_xticks(ticks, [("32 (float)" if t == 32 else f"{t:g}") for t in ticks])
                ax.invert_xaxis()
                ax.set_xlabel("weight bits (8-bit activations; 32 = dense float model)")
            else:
                ax.set_xlabel("structured sparsity: filters removed per layer (%; 0 = dense)")
            ax.set_ylabel("clean accuracy (%)" if metric == "clean_acc" else f"robust accuracy{eps} (%)")
            ax.set_ylim(0, 100)
            ax.grid(True, alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle("Accuracy against compression, per training route (mean over seeds, band ±1 sd)", fontsize=10)
    return save(fig, stem)
