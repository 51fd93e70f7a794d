"""Feature-map change under attack, drawn: how far an adversarial example moves each layer's
activations (:func:`plot_layer_change`) and one input's channel maps, clean against adversarial
(:func:`plot_activation_grid`). The data come from :mod:`rcsweep.commands.features` (which loads
models and runs PGD); the look from :mod:`analysis.style`. Importable from :mod:`analysis.plots`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import colors_for, compression_linestyle, figure, route_marker, save


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
