"""A compressed model rewritten in torch's own modules: the float twin, and what is exported.

:func:`plain_copy` returns a frozen CPU copy without compression machinery. Every Conv2d / Linear
is torch's class again with its *effective* weight in ``weight`` (the pruning mask applied, then
rounded onto its quantization grid): no ``weight_orig`` / ``weight_mask`` and no pruning hook;
channels Torch-Pruning removed are absent from the tensors already. What becomes of the fake
quantizer in front of each quantized layer depends on ``activations``:

- ``"none"``: dropped, activations stay float (the float twin: transfer attacks, the int8 model).
- ``"float"``: kept as :class:`InputGrid`, torch's ``fake_quantize_per_tensor_affine`` written out
  in plain ops, ``(clamp(round(x * (1 / s)) + z, 0, 2^b - 1) - z) * s``, the same arithmetic as its
  CPU kernel, so outputs equal the simulated model's. Any exporter takes these ops (ONNX: Mul,
  Round, Add, Clip, Sub, Mul); the weights are float32 tensors holding the grid values.
- ``"integer"``: as ``"float"``, and further every layer whose weights are on a grid of at most 8
  bits holds them as int8 codes with a float scale per output channel (:class:`CodeConv2d`,
  :class:`CodeLinear`), and every 8-bit-or-narrower activation grid is a quantize / dequantize
  pair (:class:`InputQDQ`); both use torch's ``quantized_decomposed`` ops, which the ONNX
  exporter (onnxscript's torchlib) writes as ``DequantizeLinear`` / ``QuantizeLinear``. That
  exporter refuses torch's fake-quantize ops on rcsweep's narrow weight range (codes in
  ``[-(2^(b-1) - 1), 2^(b-1) - 1]``; it takes (-128, 127) and (0, 255) only), hence the codes are
  stored and dequantized instead: they fit int8 exactly for any ``b <= 8``. An activation grid
  narrower than 8 bits is uint8 codes clipped to ``[0, 2^b - 1]`` (QuantizeLinear saturates at 255).
  Wider grids stay as in ``"float"``.

Written by hand because torch has no converter from rcsweep's fake quantizers to plain modules;
the masks are removed with ``torch.nn.utils.prune.remove`` (:func:`~.prune.bake_mask_`).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .base import LAYER_TYPES, effective_weight
from .fake_quant import dequantize_layer_
from .prune import bake_mask_

ACTIVATIONS = ("none", "float", "integer")
INT_BITS = 8  # grids of at most this many bits are stored as integer codes by ``activations="integer"``


class InputGrid(nn.Module):
    """Per-tensor affine quantization of a layer's input in plain float ops (see the module
    docstring). ``scale`` (s), ``zero_point`` (z, integer-valued) and ``levels`` (2^b - 1): buffers.

    Shape: any; returns the same shape, every value on the grid ``(k - z) * s``, k in [0, levels]."""

    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor, levels: int):
        super().__init__()
        scale = scale.detach().float().reshape(())
        self.register_buffer("scale", scale.clone())
        self.register_buffer("inv_scale", 1.0 / scale)  # torch's kernel multiplies by the float32 inverse
        self.register_buffer("zero_point", zero_point.detach().float().reshape(()).clone())
        self.levels = float(levels)

    def forward(self, x):
        q = torch.clamp(torch.round(x * self.inv_scale) + self.zero_point, 0.0, self.levels)
        return (q - self.zero_point) * self.scale


class InputQDQ(nn.Module):
    """A layer's input quantized to uint8 codes (clipped to ``[0, levels]``) and dequantized:
    ONNX ``QuantizeLinear`` (+ ``Clip`` below 8 bits) and ``DequantizeLinear``."""

    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor, levels: int):
        super().__init__()
        _decomposed_ops()
        self.scale, self.zero_point, self.levels = float(scale), int(zero_point), int(levels)

    def forward(self, x):
        qd = torch.ops.quantized_decomposed
        q = qd.quantize_per_tensor(x, self.scale, self.zero_point, 0, self.levels, torch.uint8)
        if self.levels < 255:  # QuantizeLinear saturates at 255, torch's op at ``levels``
            q = torch.clamp(q, 0, self.levels)
        return qd.dequantize_per_tensor(q, self.scale, self.zero_point, 0, self.levels, torch.uint8)


class QuantizedInput(nn.Module):
    """``layer(quant(x))``: a plain layer behind its input quantizer."""

    def __init__(self, quant: nn.Module, layer: nn.Module):
        super().__init__()
        self.quant, self.layer = quant, layer

    def forward(self, x):
        return self.layer(self.quant(x))


class _Codes(nn.Module):
    """Weights held as int8 ``codes`` (buffer) x per-output-channel float ``scale``."""

    def _set_codes(self, layer: nn.Module, weight: torch.Tensor, scale: torch.Tensor, qmax: int):
        _decomposed_ops()
        self.qmax = qmax
        s = scale.detach().float().clone()
        codes = torch.round(weight / s.view(-1, *[1] * (weight.dim() - 1)))
        self.register_buffer("codes", codes.clamp(-qmax, qmax).to(torch.int8))
        self.register_buffer("scale", s)
        self.register_buffer("zero_point", torch.zeros_like(s, dtype=torch.int32))
        self.bias = layer.bias

    def weight_value(self) -> torch.Tensor:
        return torch.ops.quantized_decomposed.dequantize_per_channel(
            self.codes, self.scale, self.zero_point, 0, -self.qmax, self.qmax, torch.int8)


class CodeConv2d(_Codes):
    """A Conv2d whose weight is int8 codes x a scale per output channel (ONNX: DequantizeLinear)."""

    def __init__(self, conv: nn.Conv2d, weight, scale, qmax):
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self._set_codes(conv, weight, scale, qmax)

    def forward(self, x):
        return F.conv2d(x, self.weight_value(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class CodeLinear(_Codes):
    """A Linear whose weight is int8 codes x a scale per output channel (ONNX: DequantizeLinear)."""

    def __init__(self, linear: nn.Linear, weight, scale, qmax):
        super().__init__()
        self._set_codes(linear, weight, scale, qmax)

    def forward(self, x):
        return F.linear(x, self.weight_value(), self.bias)


def plain_copy(model: nn.Module, activations: str = "none") -> nn.Module:
    """A plain, frozen CPU copy of ``model`` (compressed or not; ``model`` is not changed): see
    the module docstring for ``activations`` (``"none"``, ``"float"`` or ``"integer"``). In eval
    mode, every parameter with ``requires_grad=False``.

    Shape: the copy maps images (N, C, H, W) in [0, 1] to logits (N, classes), as ``model`` does.
    Raises ValueError for an unknown ``activations``."""
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS}, not {activations!r}")
    out = copy.deepcopy(model).cpu().eval()
    for name, mod in [(n, m) for n, m in out.named_modules() if isinstance(m, LAYER_TYPES)]:
        with torch.no_grad():
            w = effective_weight(mod).detach().clone()
        wq, aq = getattr(mod, "weight_quant", None), getattr(mod, "act_quant", None)
        bake_mask_(mod)
        if wq is not None:
            dequantize_layer_(mod)
        mod.weight = nn.Parameter(w, requires_grad=False)
        if activations == "none":
            continue
        integer = activations == "integer"
        layer = mod
        if integer and wq is not None and wq.bits <= INT_BITS:
            layer = (CodeConv2d if isinstance(mod, nn.Conv2d) else CodeLinear)(mod, w, wq.scale, wq.qmax)
        if aq is not None and aq.bits < 32:
            scale, zp = aq.qparams()
            grid = InputQDQ if integer and aq.bits <= INT_BITS else InputGrid
            layer = QuantizedInput(grid(scale, zp, 2 ** aq.bits - 1), layer)
        if layer is not mod:
            out.set_submodule(name, layer)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def grid_bits(model: nn.Module) -> tuple[int, int]:
    """(weight bits, activation bits) of a model's fake-quantized layers; 32 (float) for a model
    without any. Every quantized layer of a rcsweep model runs at the same bit-widths."""
    q = [m for m in model.modules() if hasattr(m, "weight_quant")]
    return max((m.weight_quant.bits for m in q), default=32), max((m.act_quant.bits for m in q), default=32)


def _decomposed_ops() -> None:
    """Register torch's ``quantized_decomposed`` ops (done by importing the module that defines them)."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401
