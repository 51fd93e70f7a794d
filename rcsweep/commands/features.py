"""``rcsweep features`` (and ``rcsweep report --features``): feature-map analysis of saved trials,
how far an adversarial example moves each layer's activations, ``||f(x_adv) - f(x)|| / ||f(x)||``
per example (forward hooks), and a few channels' activation maps for one example, clean against
adversarial. Computed here (it loads models and runs PGD); drawn by :mod:`analysis.plots`.

The adversarial examples are PGD (:class:`rcsweep.attacks.PGD`, cross-entropy, random start,
seeded) at the trial's ``eps_eval``, ``norm`` and ``eval_steps`` unless given, on the first
``n_examples`` images of the test split. A "layer" is each Conv2d / Linear; where a ReLU follows
it directly in the same ``nn.Sequential``, the ReLU's output (the feature map the next layer sees).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis import plots
from analysis.common import compression_level, route, trial_dir

from ..attacks import PGD, threat_model
from ..checkpoint import load_model, read_meta
from ..data import load_dataset
from ..errors import UserError
from ..fileio import make_folder


def feature_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(display name, module to hook)]`` in forward order (see the module docstring). A Conv2d or
    Linear with submodules of its own (a quantized layer's fake-quantizers) is one layer."""
    leaves, inside = [], None
    for n, m in model.named_modules():
        if inside is not None and n.startswith(inside + "."):
            continue  # a quantizer inside a layer
        inside = n if isinstance(m, (nn.Conv2d, nn.Linear)) else None
        if inside is not None or not list(m.children()):
            leaves.append((n, m))
    out, counts = [], {"conv": 0, "fc": 0}
    for i, (name, m) in enumerate(leaves):
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        kind = "conv" if isinstance(m, nn.Conv2d) else "fc"
        counts[kind] += 1
        width = m.weight.shape[0]
        nxt = leaves[i + 1] if i + 1 < len(leaves) else None
        same_parent = nxt is not None and nxt[0].rpartition(".")[0] == name.rpartition(".")[0]
        if nxt is not None and isinstance(nxt[1], nn.ReLU) and same_parent:
            out.append((f"{kind}{counts[kind]} ({width}) + ReLU", nxt[1]))
        else:
            out.append((f"{kind}{counts[kind]} ({width})", m))
    if out and isinstance(out[-1][1], nn.Linear):
        out[-1] = (f"logits ({out[-1][1].weight.shape[0]})", out[-1][1])
    return out


def capture(model: nn.Module, x: torch.Tensor, layers) -> list[torch.Tensor]:
    """Outputs of the hooked ``layers`` for input ``x`` (no gradients)."""
    outs = {}
    handles = [m.register_forward_hook(lambda mod, inp, o, k=k: outs.__setitem__(k, o.detach()))
               for k, (_, m) in enumerate(layers)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [outs[k] for k in range(len(layers))]


def layer_changes(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor) -> pd.DataFrame:
    """Per layer: mean and standard error over examples of ``||f(x_adv) - f(x)|| / ||f(x)||``
    (examples whose clean activations are all zero are left out)."""
    layers = feature_layers(model)
    clean, adv = capture(model, x, layers), capture(model, x_adv, layers)
    rows = []
    for k, ((name, _), a, b) in enumerate(zip(layers, clean, adv)):
        norm = a.flatten(1).norm(dim=1)
        ratio = ((b - a).flatten(1).norm(dim=1) / norm)[norm > 0].numpy()
        sem = ratio.std(ddof=1) / np.sqrt(len(ratio)) if len(ratio) > 1 else 0.0
        rows.append({"layer_index": k, "layer": name, "rel_change": float(ratio.mean()) if len(ratio) else np.nan,
                     "rel_change_sem": float(sem), "n": len(ratio)})
    return pd.DataFrame(rows)


def attack(model: nn.Module, x, y, norm: str, eps: float, steps: int, seed: int = 0) -> torch.Tensor:
    """PGD adversarial examples (deterministic for a given ``seed``)."""
    torch.manual_seed(seed)
    return PGD(threat_model(norm, eps), steps=steps)(model, x, y)


def load_trial(folder, trial_id: str):
    """(model, trial parameters as a flat dict) of a saved trial of the sweep in ``folder``."""
    path = trial_dir(folder, trial_id)
    if not (path / "model.pt").is_file():
        raise UserError(f"trial {trial_id!r} has no saved model ({path}/model.pt not found)")
    _, meta = read_meta(path)
    return load_model(path), meta["config"]


def trial_label(trial_id: str, params: dict) -> dict:
    return {"trial_id": trial_id, "route": route(params), "compression_level": compression_level(params),
            "label": f"{trial_id}: {route(params)}, {compression_level(params)}"}


def feature_analysis(folder, trial_ids, n_examples: int = 128, eps=None, steps=None, data_dir=None):
    """Layer changes of several trials on the same test images. Returns ``(changes, inputs)``:
    a long DataFrame (trial_id, label, route, compression_level, layer_index, layer, rel_change,
    rel_change_sem, n, eps, fooled) and ``{trial_id: (model, params, x, y, x_adv)}``."""
    frames, inputs = [], {}
    for tid in trial_ids:
        model, p = load_trial(folder, tid)
        if not feature_layers(model):
            raise UserError(f"trial {tid}: its model has no Conv2d or Linear layer to measure")
        x, y = load_dataset(p["dataset"], "test", data_dir=data_dir, test_size=n_examples)
        e = p["eps_eval"] if eps is None else eps
        x_adv = attack(model, x, y, p["norm"], e, steps or p["eval_steps"])
        with torch.no_grad():
            fooled = (model(x_adv).argmax(1) != y).float().mean().item()
        ch = layer_changes(model, x, x_adv).assign(eps=e, fooled=fooled, **trial_label(tid, p))
        frames.append(ch)
        inputs[tid] = (model, p, x, y, x_adv)
    return pd.concat(frames, ignore_index=True), inputs


def _display(img: torch.Tensor) -> np.ndarray:
    return (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy()


def activation_maps(model, x, y, x_adv, layer_index=None, n_channels: int = 4, index=None, title: str = "") -> dict:
    """Maps of the ``n_channels`` channels that the attack changes most, in one spatial layer
    (default: the first), for one example (default: the first one the attack flips from a
    correct prediction, else the first). Returns arrays ready for :func:`plots.plot_activation_grid`."""
    layers = feature_layers(model)
    with torch.no_grad():
        pc, pa = model(x).argmax(1), model(x_adv).argmax(1)
    if index is None:
        flipped = ((pc == y) & (pa != y)).nonzero().flatten()
        index = int(flipped[0]) if len(flipped) else 0
    if not 0 <= index < len(x):
        raise UserError(f"example index {index} is outside 0..{len(x) - 1}")
    one, one_adv = x[index:index + 1], x_adv[index:index + 1]
    outs = [o[0] for o in capture(model, one, layers)], [o[0] for o in capture(model, one_adv, layers)]
    spatial = [k for k, o in enumerate(outs[0]) if o.dim() == 3]
    if not spatial:
        raise UserError("this model has no layer with spatial feature maps")
    k = spatial[0] if layer_index is None else layer_index
    if k not in spatial:
        raise UserError(f"layer {k} has no spatial feature maps; choose one of {spatial}")
    a, b = outs[0][k].numpy(), outs[1][k].numpy()
    change = np.abs(b - a).reshape(len(a), -1).mean(1)
    chans = [int(c) for c in np.argsort(-change, kind="stable")[:n_channels]]
    delta = (one_adv - one)[0].mean(0).numpy()
    return {"x": _display(one[0]), "x_adv": _display(one_adv[0]), "delta": delta, "clean": a, "adv": b,
            "channels": chans, "layer": layers[k][0], "label": int(y[index]), "pred_clean": int(pc[index]),
            "pred_adv": int(pa[index]), "index": index, "title": title}


def run_features(folder, trial_ids, out_stem, n_examples: int = 128, eps=None, steps=None, layer_index=None,
                 n_channels: int = 4, data_dir=None) -> list:
    """Compute and draw: ``<stem>.csv`` + ``<stem>.png/.svg`` (changes across layers for every
    trial) and ``<stem>_maps.png/.svg`` (activation maps of the first trial). Returns the paths."""
    out_stem = Path(out_stem)
    changes, inputs = feature_analysis(folder, trial_ids, n_examples, eps, steps, data_dir)
    make_folder(out_stem.parent, "--out")
    changes.to_csv(out_stem.with_suffix(".csv"), index=False)
    e = changes["eps"].iloc[0]
    paths = [out_stem.with_suffix(".csv")]
    paths += plots.plot_layer_change(changes, out_stem, f" (PGD, ε={e:.3g})" if changes["eps"].nunique() == 1 else "")
    first = trial_ids[0]
    model, p, x, y, x_adv = inputs[first]
    maps = activation_maps(model, x, y, x_adv, layer_index, n_channels, title=trial_label(first, p)["label"])
    paths += plots.plot_activation_grid(maps, out_stem.with_name(out_stem.name + "_maps"))
    return paths

