"""The study's accuracy curves, drawn: accuracy against compression (:func:`plot_compression_curves`,
the study's Figure 1) and against epsilon (:func:`plot_robustness_curves`), one line per training
route in its fixed colour, a band of one standard deviation over seeds. The data come from
:mod:`analysis.tables`; the look from :mod:`analysis.style`. Importable from :mod:`analysis.plots`.
"""
from __future__ import annotations

from pathlib import Path

from .style import colors_for, compression_linestyle, route_marker, save


def varied_axes(curves) -> list[str]:
    """The compression axes (``sparsity``, ``weight_bits``) along which ``curves`` vary (at least two
    values: a pruning-only sweep's weight bits hold the dense model alone); both where neither does."""
    varied = [a for a in ("sparsity", "weight_bits") if curves.loc[curves["axis"] == a, "x"].nunique() >= 2]
    return varied or ["sparsity", "weight_bits"]


def plot_compression_curves(curves, stem, eps: str = "") -> list[Path]:
    """The study's Figure 1: clean (top) and robust (bottom) accuracy against structured sparsity
    (left) and weight bits (right), one line per training route, a band of ±1 standard deviation
    over seeds where there are several; ``curves`` from :func:`analysis.tables.compression_curves`.
    An axis the sweep did not vary (a pruning-only sweep's weight bits: the dense model alone) gets
    no column."""
    import matplotlib.pyplot as plt

    shown = varied_axes(curves)
    fig, axes = plt.subplots(2, len(shown), figsize=(5 * len(shown), 7), layout="constrained", sharey="row",
                             squeeze=False)
    colors = colors_for("route", curves["route"])
    for col, axis in enumerate(shown):
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
    seeds = "mean over seeds, band ±1 sd" if "n_seeds" not in curves or curves["n_seeds"].max() > 1 else "one seed"
    fig.suptitle(f"Accuracy against compression, per training route ({seeds})", fontsize=10)
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
