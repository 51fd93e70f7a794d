"""Compression stage: ``compress_(model, cfg, calib, device)`` changes a model in place.

Interface used by the pipeline and by :func:`rcsweep.load_model`:

- ``compress_(model, cfg, calib=(x_val, y_val), device) -> Compression``: applies
  ``cfg.compression``; the returned handle's ``enforce()`` is called after every optimiser step of
  fine-tuning so masks and quantisation grids stay in force, ``finalize()`` once after fine-tuning
  (it rounds the weights onto their grid), and ``info`` (a JSON-able dict) is stored in
  ``model.json`` under ``"compression"``.
- ``restore_structure_(model, cfg, info)``: gives a freshly built dense model the compressed
  structure (channel counts, masks, quantizers) so that a saved state_dict loads into it.
- ``freeze_(model)``: makes a compressed model plain and frozen (masks baked into weights,
  activation ranges fixed), as :func:`rcsweep.load_model` returns it.
- ``masks_baked(info)``: the ``info`` of the same model once :func:`freeze_` baked its pruning masks
  into plain weights (what ``restore_structure_`` must then rebuild: no masks).
- ``max_structured_sparsity(model, dataset, width)``: the largest ``sparsity`` channel pruning
  reaches on a registered model (the sweep-file validation refuses more).

Every compressor compares what it did with what was asked (``info["target"]`` and
``info["achieved"]``, within the tolerance its module states) or raises :class:`TargetNotReached`.

``COMPRESSORS`` maps each ``compression`` name to a factory ``cfg -> Compressor``. It is built from
:data:`rcsweep.compress_params.COMPRESSION_METHODS`, where each method's parameters are declared
without torch (the trial configuration reads them): a one-part method's factory is the compressor
class its parameter class names (``compressor = "module:Class"``), a several-part method's the
:func:`chain` of its parts under their ``part`` names. A new method is a module with a
:class:`Compressor`, its parameter class and one registration line in ``compress_params``; nothing
here changes. The shared contract suite (tests/test_compress_contract.py) checks that each part's
compressor declares that parameter class and runs every method.
"""
from __future__ import annotations

import importlib

from torch import nn

from ..compress_params import COMPRESSION_METHODS
from ..config import TrialConfig
from ..errors import UserError
from ..registry import Registry
from .base import (Chain, Compression, Compressor, TargetNotReached, chain, effective_weight, float_weight,
                   param_parts, prunable_layers)
from .freeze import freeze_, is_frozen
from .structured import max_structured_sparsity


def compressor_class(params: type) -> type:
    """The :class:`Compressor` that parameter class ``params`` names (``"module:Class"``); a
    TypeError naming the class when it names none."""
    target = getattr(params, "compressor", None)
    if not isinstance(target, str) or target.count(":") != 1:
        raise TypeError(f"{params.__name__} names no compressor: give it compressor: ClassVar[str] = 'module:Class'")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _factory(parts: tuple) -> type:
    if len(parts) == 1:
        return compressor_class(parts[0])
    return chain(*((p.part, compressor_class(p)) for p in parts))


COMPRESSORS: Registry = Registry("compressor")
for _name in COMPRESSION_METHODS.names():
    COMPRESSORS.register(_name)(_factory(COMPRESSION_METHODS.get(_name)))


def compress_(model: nn.Module, cfg: TrialConfig, calib=None, device="cpu") -> Compression:
    """Compress ``model`` in place as ``cfg.compression`` says; ``calib`` = (images, labels) of ``val``."""
    if cfg.compression == "none":
        return Compression({"method": "none"})
    if calib is None:
        raise UserError(f"compression {cfg.compression} needs calibration data (the val split)")
    dense = _dense_counts(model, tuple(calib[0].shape[1:]))
    compressor = COMPRESSORS.get(cfg.compression)(cfg)
    info = {"method": cfg.compression, **dense, **compressor.apply(model, calib, device)}
    return Compression(info, compressor, model)


def restore_structure_(model: nn.Module, cfg: TrialConfig, info: dict) -> Compression:
    """Rebuild the compressed structure recorded in ``info`` on a freshly built dense model.

    ``info`` without a ``method`` (or with ``"none"``) means the model was saved before compression,
    whatever ``cfg.compression`` says, and nothing is changed."""
    method = (info or {}).get("method", "none")
    if method == "none":
        return Compression({"method": "none"})
    compressor = COMPRESSORS.get(method)(cfg)
    compressor.restore(model, info)
    return Compression(info, compressor, model)


def masks_baked(info: dict) -> dict:
    """The compression ``info`` (model.json's ``"compression"``) of a model whose unstructured
    pruning masks were baked into plain weights (:func:`freeze_`): its state_dict has ``weight``
    where the masked one had ``weight_orig`` and ``weight_mask``, so :func:`restore_structure_` must
    not re-create the masks. Unstructured pruning alone leaves ``{"method": "none"}``, pruning then
    quantization the quantization's info; the masked info is kept under ``"masks_baked"``. Other
    methods hold no masks and are returned unchanged."""
    method = (info or {}).get("method", "none")
    if method == "prune":
        return {"method": "none", "masks_baked": info}
    if method == "prune_quant":
        return {**info["quant"], "method": "quant", "masks_baked": info}
    return dict(info or {})


def _dense_counts(model: nn.Module, input_shape: tuple) -> dict:
    return {"dense_params": sum(p.numel() for p in model.parameters()),
            "dense_prunable_weights": sum(m.weight.numel() for _, m in prunable_layers(model, input_shape))}


__all__ = ["COMPRESSORS", "Chain", "Compression", "Compressor", "TargetNotReached", "chain", "compress_",
           "compressor_class",
           "effective_weight", "float_weight", "freeze_", "is_frozen", "masks_baked", "max_structured_sparsity",
           "param_parts",
           "prunable_layers", "restore_structure_"]
