"""Efficiency metrics counted on the actual (compressed) model.

``macs``: multiply-accumulates of one forward pass of one example, counted with forward hooks on
Conv2d and Linear layers. Training FLOPs are estimated as 2 * MACs (one forward) * 3 (forward and
backward) per example and pass; an adversarial example costs ``1 + attack_steps`` such passes.
"""
from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, input_shape: tuple) -> int:
    """MACs of one forward pass of one example of shape ``input_shape`` (C, H, W)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
            total += out.numel() // out.shape[0] * k
        elif isinstance(mod, nn.Linear):
            total += out.numel() // out.shape[0] * mod.weight.shape[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return int(total)


def training_flops(macs: int, examples: int, epochs: int, passes_per_example: int) -> float:
    """Estimated training FLOPs: 2 FLOPs per MAC, x3 for forward + backward."""
    return 2.0 * macs * 3 * examples * epochs * passes_per_example


def efficiency(model: nn.Module, cfg, input_shape: tuple, dense_params: int) -> dict:
    """Per-trial efficiency metrics (dense float models; compression extends this)."""
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    return {"params": params, "params_nonzero": nonzero, "sparsity_measured": 1 - nonzero / dense_params,
            "model_bits": 32 * params, "dense_model_bits": 32 * dense_params, "macs": count_macs(model, input_shape)}
