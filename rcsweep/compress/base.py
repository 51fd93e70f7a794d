"""The compressor interface and the layer helpers every compressor shares.

A :class:`Compressor` is one method (unstructured pruning, channel pruning, fake quantization, or a
:class:`Chain` of them). It changes a model in place in :meth:`~Compressor.apply` and returns a
JSON-able ``info`` dict; :meth:`~Compressor.restore` rebuilds the same structure on a freshly built
dense model from that ``info`` (so a saved state_dict loads into it); :meth:`~Compressor.enforce`
runs after every optimiser step and :meth:`~Compressor.finalize` once after fine-tuning.

"Prunable" layers are every ``Conv2d`` and ``Linear`` except the classifier, found as the last such
layer to run in a forward pass (registration order can differ from execution order).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

LAYER_TYPES = (nn.Conv2d, nn.Linear)


class Compressor(ABC):
    """One compression method, built per model from the trial config (``Compressor(cfg)``)."""

    def __init__(self, cfg):
        self.cfg = cfg

    @abstractmethod
    def apply(self, model: nn.Module, calib: tuple, device) -> dict:
        """Compress ``model`` in place; ``calib`` = (images, labels) of the ``val`` split. Returns info."""

    @abstractmethod
    def restore(self, model: nn.Module, info: dict) -> None:
        """Give a freshly built dense ``model`` the structure described by ``info`` (weights are loaded later)."""

    def enforce(self, model: nn.Module) -> None:
        """Re-impose the constraints after an optimiser step."""

    def finalize(self, model: nn.Module) -> None:
        """Settle the weights once training is over (for example, round them onto the quantization grid)."""


class Chain(Compressor):
    """Several compressors in order (prune, then quantize what remains); info is keyed by ``key``."""

    def __init__(self, cfg, *parts: tuple[str, type]):
        super().__init__(cfg)
        self.parts = [(key, cls(cfg)) for key, cls in parts]

    def apply(self, model, calib, device):
        return {key: c.apply(model, calib, device) for key, c in self.parts}

    def restore(self, model, info):
        for key, c in self.parts:
            c.restore(model, info[key])

    def enforce(self, model):
        for _, c in self.parts:
            c.enforce(model)

    def finalize(self, model):
        for _, c in self.parts:
            c.finalize(model)


def chain(*parts: tuple[str, type]):
    """A registrable factory ``cfg -> Chain(cfg, *parts)``."""
    return lambda cfg: Chain(cfg, *parts)


@dataclass
class Compression:
    """The handle the pipeline gets back: ``info`` goes into model.json; ``enforce()`` runs after
    every optimiser step of fine-tuning and ``finalize()`` once after it."""

    info: dict = field(default_factory=dict)
    compressor: Optional[Compressor] = None
    model: Optional[nn.Module] = None

    def enforce(self) -> None:
        if self.compressor is not None:
            with torch.no_grad():
                self.compressor.enforce(self.model)

    def finalize(self) -> None:
        if self.compressor is not None:
            with torch.no_grad():
                self.compressor.finalize(self.model)


def layers_in_order(model: nn.Module, input_shape: tuple) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d / Linear in the order they run on one input of ``input_shape``."""
    names = {m: n for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)}
    order: list = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m) if m not in order else None) for m in names]
    was = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return [(names[m], m) for m in order]


def prunable_layers(model: nn.Module, input_shape: tuple) -> list[tuple[str, nn.Module]]:
    """Every Conv2d / Linear except the classifier (the last one to run)."""
    return layers_in_order(model, input_shape)[:-1]


def float_weight(m: nn.Module) -> torch.Tensor:
    """The weight a layer holds, with its pruning mask applied but before quantization.

    ``torch.nn.utils.prune`` recomputes ``m.weight`` only in a forward pre-hook, so after an
    optimiser step ``m.weight`` is stale: read ``weight_orig * weight_mask`` instead."""
    if hasattr(m, "weight_mask"):
        return m.weight_orig * m.weight_mask
    return m.weight


def effective_weight(m: nn.Module) -> torch.Tensor:
    """The weight the layer computes with: masked, then fake-quantized if it is a quantized layer."""
    w = float_weight(m)
    wq = getattr(m, "weight_quant", None)
    return wq(w) if wq is not None else w


def submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        from ..errors import CheckpointError

        raise CheckpointError(f"the saved compression names layer {name!r}, which this model does not have") from None
