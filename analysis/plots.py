"""Drawing only: every function takes data computed elsewhere in :mod:`analysis` and writes
``<stem>.png`` and ``<stem>.svg``.

Style: the Okabe-Ito colour-blind-safe palette; one fixed colour per group value, so that
"adversarial pretraining" or "prune" has the same colour in every figure; markers and line styles
repeat the grouping so that nothing relies on colour alone; units on every axis; sizes on log
axes; accuracies in percent; reference models drawn as black-edged stars.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .pareto import LOG_COLUMNS

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7"}
_O = OKABE_ITO
PALETTE = [_O["blue"], _O["orange"], _O["bluish_green"], _O["vermillion"], _O["reddish_purple"], _O["sky_blue"],
           _O["black"], _O["yellow"]]
GROUP_COLORS = {
    "pretrain": {"standard": _O["blue"], "adversarial": _O["vermillion"]},
    # blue marks the baseline choice of each step (standard pretraining, no compression, no fine-tuning)
    "finetune": {"none": _O["blue"], "clean": _O["sky_blue"], "adversarial": _O["orange"]},
    "compression": {"none": _O["blue"], "prune": _O["bluish_green"], "prune_structured": _O["sky_blue"],
                    "quant": _O["reddish_purple"], "prune_quant": _O["orange"], "prune_structured_quant": _O["vermillion"]},
    # a training route is '<pretrain> pretrain, <finetune> FT' (analysis.common.route)
    "route": {"standard pretrain, none FT": _O["blue"], "standard pretrain, clean FT": _O["sky_blue"],
              "standard pretrain, adversarial FT": _O["orange"], "adversarial pretrain, none FT": _O["vermillion"],
              "adversarial pretrain, clean FT": _O["reddish_purple"],
              "adversarial pretrain, adversarial FT": _O["bluish_green"]},
}
MARKERS = {"none": "o", "prune": "^", "prune_structured": "v", "quant": "s", "prune_quant": "D",
           "prune_structured_quant": "P"}
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
LABELS = {"robust_acc": "robust accuracy{eps} (%)", "clean_acc": "clean accuracy (%)",
          "int8_clean_acc": "int8 clean accuracy (%)", "int8_transfer_robust_acc": "int8 transfer robust accuracy (%)",
          "sparsity_measured": "measured sparsity (%)", "model_bits": "model size (bits)",
          "params": "parameters (count)", "params_nonzero": "non-zero parameters (count)",
          "macs": "multiply-accumulates per example (MACs)", "bops": "bit operations per example (BOPs)",
          "latency_ms_b1": "latency at batch 1 (ms)", "latency_ms_b128": "latency at batch 128 (ms)",
          "flops_pretrain": "pretraining compute (FLOPs)", "flops_finetune": "fine-tuning compute (FLOPs)"}
PERCENT = ("robust_acc", "clean_acc", "int8_clean_acc", "int8_transfer_robust_acc", "sparsity_measured")


ROUTE_MARKERS = "os^vDP"


def route_marker(name: str) -> str:
    """A fixed marker per known training route (same in every figure), 'o' for others."""
    known = list(GROUP_COLORS["route"])
    return ROUTE_MARKERS[known.index(name)] if name in known else "o"


def compression_linestyle(level: str):
    """A fixed line style per compression method ('prune 80%' -> the style of 'prune')."""
    methods = list(MARKERS)
    method = str(level).split()[0]
    return LINESTYLES[methods.index(method) % len(LINESTYLES)] if method in methods else "-"


def colors_for(column: str, values) -> dict:
    """Value -> colour: the fixed colour of a known group, else palette order of the sorted values."""
    fixed = GROUP_COLORS.get(column, {})
    values = list(dict.fromkeys(values))
    rest = sorted((v for v in values if v not in fixed), key=str)
    out = {v: fixed[v] for v in values if v in fixed}
    out.update({v: PALETTE[i % len(PALETTE)] for i, v in enumerate(rest)})
    return out


def axis_label(column: str, eps_text: str = "") -> str:
    if column in LABELS:
        return LABELS[column].format(eps=eps_text)
    if column.startswith("time_") and column.endswith("_s"):
        return f"{column[5:-2]} time (s)"
    return column


def eps_text(df) -> str:
    """' at ε=0.1 (L∞)' when the rows share one eps_eval and norm, else ''."""
    if "eps_eval" not in df or df["eps_eval"].nunique() != 1:
        return ""
    norm = {"linf": "L∞", "l2": "L2"}.get(df["norm"].iloc[0], df["norm"].iloc[0]) if "norm" in df else ""
    return f" at ε={df['eps_eval'].iloc[0]:.3g} ({norm})"


def shown(column: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v * 100 if column in PERCENT else v


def is_log(column: str) -> bool:
    return column in LOG_COLUMNS or column.startswith("flops")


def save(fig, stem) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg``; close the figure."""
    import matplotlib.pyplot as plt

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _figure(*size, ncols=1):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=size, layout="constrained")
    return fig, axes


def _setup_axes(ax, xcol, ycol, eps):
    ax.set_xlabel(axis_label(xcol, eps) + (", log scale" if is_log(xcol) else ""))
    ax.set_ylabel(axis_label(ycol, eps) + (", log scale" if is_log(ycol) else ""))
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    for axis, col in ((ax.xaxis, xcol), (ax.yaxis, ycol)):
        if is_log(col):  # label 1, 2 and 5 x 10^k so that short ranges still read, without overlap
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
            axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
            axis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(np.inf, np.inf)))
    ax.grid(True, which="major", alpha=0.3)


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
    for (_, r), name in zip(refs.iterrows(), names):
        x, y = shown(xo.column, [r[xo.column]])[0], shown(yo.column, [r[yo.column]])[0]
        ax.scatter([x], [y], s=190, marker="*", facecolors=GROUP_COLORS["pretrain"].get(r.get("pretrain"), "white"),
                   edgecolors="black", lw=1.0, zorder=4)
        ax.annotate(name, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=8)
    if len(refs):
        ax.scatter([], [], s=150, marker="*", facecolors="white", edgecolors="black", label="reference models")


def plot_pareto(result, stem, title: str | None = None) -> list[Path]:
    """The front of a :class:`analysis.pareto.ParetoResult` over its first two objectives: all
    usable trials, suspect ones (excluded), the overall front, group fronts, reference models."""
    from .common import reference_name

    objs = result.objectives
    yo, xo = objs[0], objs[1]
    eps = eps_text(result.usable)
    fig, ax = _figure(7.2, 4.8)
    u = result.usable
    ax.scatter(shown(xo.column, u[xo.column]), shown(yo.column, u[yo.column]), s=14, color="#999999", alpha=0.6,
               label=f"finished trials ({len(u)})", zorder=2)
    ex = result.excluded
    sus = ex[ex["reason"].str.startswith("suspect")].dropna(subset=[xo.column, yo.column])
    if len(sus):
        ax.scatter(shown(xo.column, sus[xo.column]), shown(yo.column, sus[yo.column]), s=30, marker="x",
                   color="#555555", label=f"suspect, excluded ({len(sus)})", zorder=2)
    if result.by:  # the overall front as rings behind the group fronts' filled markers
        draw_front(ax, result.front, objs, "black", f"overall front (HV {result.hypervolume:.3f})", hollow=True,
                   linestyle="--", size=110)
        colors = colors_for(result.by, list(result.group_fronts))
        for i, (key, f) in enumerate(result.group_fronts.items()):
            draw_front(ax, f, objs, colors[key], f"{result.by}={key} (HV {result.group_hypervolume[str(key)]:.3f})",
                       marker=MARKERS.get(key, "o") if result.by == "compression" else "osD^vP"[i % 6],
                       linestyle=LINESTYLES[(i + 1) % len(LINESTYLES)])
    else:
        draw_front(ax, result.front, objs, "black", f"front (HV {result.hypervolume:.3f})")
    refs = result.references
    draw_references(ax, refs, objs, [reference_name(r) for _, r in refs.iterrows()])
    _setup_axes(ax, xo.column, yo.column, eps)
    extra = f"; front over {len(objs)} objectives, shown on the first two" if len(objs) > 2 else ""
    ax.set_title(title or f"Pareto front: {yo} vs {xo}{extra}", fontsize=10)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    return save(fig, stem)


def plot_compare(fronts: dict, curves: dict, objectives, stem, eps: str = "") -> list[Path]:
    """Left: the sweeps' fronts overlaid; right: hypervolume against the number of finished trials.
    ``fronts``/``curves``: sweep name -> front DataFrame / hypervolume_curve DataFrame."""
    fig, (ax, ax2) = _figure(11.5, 4.4, ncols=2)
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(fronts)}
    for i, (name, f) in enumerate(fronts.items()):
        draw_front(ax, f, objectives, colors[name], name, marker="osD^vP"[i % 6], linestyle=LINESTYLES[i % 6])
    _setup_axes(ax, objectives[1].column, objectives[0].column, eps)
    ax.set_title("Pareto fronts", fontsize=10)
    ax.legend(fontsize=8)
    for i, (name, c) in enumerate(curves.items()):
        ax2.step(c["n_finished"], c["hypervolume"], where="post", color=colors[name], linestyle=LINESTYLES[i % 6],
                 lw=1.8, label=f"{name} (final {c['hypervolume'].iloc[-1]:.3f})" if len(c) else name)
    from matplotlib.ticker import MaxNLocator

    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("finished trials (count, in start order)")
    ax2.set_ylabel("hypervolume (accuracy x decades smaller than dense)" if _default(objectives)
                   else "hypervolume (normalised as in the .json beside)")
    ax2.set_title("Hypervolume as the sweep runs", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return save(fig, stem)


def _default(objectives) -> bool:
    return [(o.column, o.direction) for o in objectives] == [("robust_acc", "max"), ("model_bits", "min")]


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
    ``changes`` from :func:`analysis.features.layer_changes` (one line per trial)."""
    fig, ax = _figure(7.2, 4.4)
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
    adversarial input and their difference; ``maps`` from :func:`analysis.features.activation_maps`."""
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
