"""The look shared by every analysis figure: the Okabe-Ito colour-blind-safe palette, one fixed
colour (and marker or line style) per group value so that "adversarial pretraining" or "prune"
looks the same in every figure, axis labels with units, log axes for sizes, and saving as
``<stem>.png`` + ``<stem>.svg``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rcsweep import metrics_table
from rcsweep.fileio import make_folder
from rcsweep.pareto import LOG_COLUMNS


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
    # a training route is '<pretrain> pretrain, <finetune> FT', 'no FT' without fine-tuning (analysis.common.route)
    "route": {"standard pretrain, no FT": _O["blue"], "standard pretrain, clean FT": _O["sky_blue"],
              "standard pretrain, adversarial FT": _O["orange"], "adversarial pretrain, no FT": _O["vermillion"],
              "adversarial pretrain, clean FT": _O["reddish_purple"],
              "adversarial pretrain, adversarial FT": _O["bluish_green"]},
}
MARKERS = {"none": "o", "prune": "^", "prune_structured": "v", "quant": "s", "prune_quant": "D",
           "prune_structured_quant": "P"}
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
LABELS = {m.name: m.label for m in metrics_table.METRICS}  # axis labels: the metric table's
PERCENT = tuple(m.name for m in metrics_table.METRICS if m.unit == "fraction" and m.kind == "float")


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
    make_folder(stem.parent, "the figure's folder")
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def figure(*size, ncols=1):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=size, layout="constrained")
    return fig, axes


def setup_axes(ax, xcol, ycol, eps):
    ax.set_xlabel(axis_label(xcol, eps) + (", log scale" if is_log(xcol) else ""))
    ax.set_ylabel(axis_label(ycol, eps) + (", log scale" if is_log(ycol) else ""))
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    for axis, col in ((ax.xaxis, xcol), (ax.yaxis, ycol)):
        if is_log(col):  # label 1, 2 and 5 x 10^k so that short ranges still read, without overlap
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
            axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
            axis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(np.inf, np.inf)))
    ax.grid(True, which="major", alpha=0.3)


def default_objectives(objectives) -> bool:
    return [(o.column, o.direction) for o in objectives] == list(metrics_table.DEFAULT_OBJECTIVES)
