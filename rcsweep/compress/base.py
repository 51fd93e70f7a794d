"""The compressor interface and the layer helpers every compressor shares.

A :class:`Compressor` is one method (unstructured pruning, channel pruning, fake quantization, or a
:class:`Chain` of them). It changes a model in place in :meth:`~Compressor.apply` and returns a
JSON-able ``info`` dict; :meth:`~Compressor.restore` rebuilds the same structure on a freshly built
dense model from that ``info`` (so a saved state_dict loads into it); :meth:`~Compressor.enforce`
runs after every optimiser step and :meth:`~Compressor.finalize` once after fine-tuning;
:meth:`~Compressor.check` compares what the model now is with what the config asked for and
returns ``{"target": ..., "achieved": ...}`` (merged into ``info`` after ``apply`` and again after
``finalize``), or raises :class:`TargetNotReached`. A compressor never silently misses its target:
each one states its tolerance in its module docstring.

"Prunable" layers are every ``Conv2d`` and ``Linear`` except the classifier, found as the last such
layer to run in a forward pass (registration order can differ from execution order).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
from torch import nn

from ..errors import UserError

LAYER_TYPES = (nn.Conv2d, nn.Linear)


class TargetNotReached(UserError):
    """A compressor cannot reach (or did not reach) the sparsity or bit-width asked for; the
    one-line message names the model, the target and what was reached."""


class Compressor(ABC):
    """One compression method, built per model from the trial config (``Compressor(cfg)``).

    ``Params``: the class declaring the method's trial parameters (:mod:`rcsweep.compress_params`),
    which the trial configuration reads without importing torch; ``self.cfg`` holds their values."""

    Params: ClassVar[type]

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

    @abstractmethod
    def check(self, model: nn.Module) -> dict:
        """``{"target": ..., "achieved": ...}`` of ``model`` as it is now; raises
        :class:`TargetNotReached` when the achieved value is outside the stated tolerance."""


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

    def check(self, model):
        return {key: c.check(model) for key, c in self.parts}


def chain(*parts: tuple[str, type]):
    """A registrable factory ``cfg -> Chain(cfg, *parts)``; its ``parts`` are the parameter classes of
    the compressors chained, in order (each part's key names its info in ``model.json``)."""
    def make(cfg) -> Chain:
        return Chain(cfg, *parts)

    make.parts = tuple(cls.Params for _, cls in parts)
    return make


def param_parts(factory) -> tuple[type, ...]:
    """The parameter classes a registered compressor (a :class:`Compressor` or a :func:`chain`) takes."""
    return getattr(factory, "parts", None) or (factory.Params,)


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
        """Settle the weights, then check the targets again (fine-tuning may have moved what was
        achieved, e.g. weights that shrank below their grid's top code) and record it in ``info``."""
        if self.compressor is not None:
            with torch.no_grad():
                self.compressor.finalize(self.model)
                merge_info(self.info, self.compressor.check(self.model))


def merge_info(info: dict, update: dict) -> dict:
    """``info`` updated in place by ``update``, nested dicts merged key by key (a Chain's parts)."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(info.get(k), dict):
            merge_info(info[k], v)
        else:
            info[k] = v
    return info


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
