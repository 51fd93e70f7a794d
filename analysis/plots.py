"""Drawing only: every function takes data computed elsewhere in :mod:`analysis` and writes
``<stem>.png`` and ``<stem>.svg``, in the shared look of :mod:`analysis.style` (fixed colour per
group value, markers and line styles that repeat the grouping so nothing relies on colour alone,
units on every axis, sizes on log axes, accuracies in percent, reference models as stars).

This module draws Pareto fronts (one panel, or one per pair of objectives) and the comparison of
sweeps; the study's accuracy curves are :mod:`analysis.curve_plots`, the feature-map figures
:mod:`analysis.feature_plots`. Every figure is importable from here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rcsweep.pareto import objective_pairs

from .curve_plots import plot_compression_curves, plot_robustness_curves, varied_axes
from .feature_plots import plot_activation_grid, plot_layer_change
from .style import (GROUP_COLORS, LINESTYLES, MARKERS, PALETTE, colors_for, default_objectives, eps_text, figure,
                    save, setup_axes, shown)

__all__ = ["eps_text", "plot_activation_grid", "plot_compare", "plot_compression_curves", "plot_layer_change",
           "plot_pareto", "plot_pareto_projections", "plot_robustness_curves", "varied_axes"]


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


