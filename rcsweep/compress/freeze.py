"""A compressed model made plain and frozen: what :func:`rcsweep.load_model` returns.

A model in the pipeline carries compression machinery that training needs: ``torch.nn.utils.prune``
keeps ``weight_orig`` and ``weight_mask`` and recomputes ``.weight`` only in a forward pre-hook (so
after an optimiser step ``.weight`` is stale), and QAT activation quantizers move their range with
every batch in training mode. :func:`freeze_` removes both, so that the parameters read directly are
the weights that were evaluated and no call, in train mode or not, moves a quantization range:

- pruning masks are baked into plain ``weight`` parameters (``torch.nn.utils.prune.remove``: the
  same ``weight_orig * weight_mask`` product the hook computes, pruned zeros included);
- quantized layers keep their fake quantizers (rcsweep's evaluation looks for them: transfer attacks
  from the float twin, efficiency metrics, the int8 model), with the stored weights on their grid
  (rounding an on-grid weight again changes nothing) and every activation range frozen;
- the model is put in eval mode.

Outputs are unchanged, bit for bit. Parameters keep ``requires_grad`` (attacks need input gradients
through them, and a loaded *dense* model is reused as a pretrained model and trained further).
BatchNorm running statistics are not frozen: they are not compression state, and training a
reused pretrained model must update them.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import LAYER_TYPES
from .fake_quant import ActFakeQuant
from .prune import bake_mask_


def freeze_(model: nn.Module) -> nn.Module:
    """Bake masks into weights, round quantized weights onto their grid, freeze activation ranges,
    set eval mode; in place (see the module docstring). Returns ``model``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ActFakeQuant):
                m.freeze()
            if not isinstance(m, LAYER_TYPES):
                continue
            bake_mask_(m)
            wq = getattr(m, "weight_quant", None)
            if wq is not None:
                m.weight.copy_(wq(m.weight))
    return model.eval()


def is_frozen(model: nn.Module) -> bool:
    """Whether ``model`` holds no pruning reparametrisation and no activation range that can move."""
    for m in model.modules():
        if hasattr(m, "weight_orig") or hasattr(m, "weight_mask"):
            return False
        if isinstance(m, ActFakeQuant) and (m.tracking or m.calibrate_next):
            return False
    return True
