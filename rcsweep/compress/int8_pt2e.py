"""rcsweep's quantization grids as a torchao PT2E quantizer, and the x86 lowering of the result.

torchao's ``X86InductorQuantizer`` calibrates its own grids (histogram observers for activations,
min/max per channel over [-128, 127] for weights). A rcsweep model already has its grids, and the
integer model must compute on exactly those, so :class:`GridQuantizer` annotates every Conv2d /
Linear of the captured graph with the simulated layer's own quantization:

- its input: per tensor, uint8 ``[0, 255]``, the layer's calibrated scale and zero point
  (``FixedQParamsQuantizationSpec``); a tensor feeding two layers gets one quantizer per edge, so
  each layer keeps its own range.
- its weight: per output channel, symmetric, int8 narrow range ``[-127, 127]`` as rcsweep stores it,
  at the layer's own scales (:class:`GridObserver`). ``prepare_pt2e`` folds a BatchNorm that follows
  a conv into the conv's weight, which rescales each output channel by a factor ``a``; the folded
  weight is then ``codes x scale x a``, so its grid is the same codes at ``scale x |a|`` (the sign
  goes into the codes), read off the folded weight itself.
- the bias and everything else (BatchNorm, residual sums, the logits) stay float32, as in the
  simulated model; an activation quantized there is quantized here, nowhere else.

Every grid rcsweep builds at 8 bits is expressible; grids of fewer bits have no integer model
(:func:`~.int8.has_int8`).

:func:`lower_x86` is torchao's ``lower_pt2e_quantized_to_x86`` (export, decompose, Inductor's
freezing passes with the x86 quantization patterns that torchao registers, constant folding) with
two changes: the batch dimension stays dynamic (torchao's re-export fixes it to the example's),
and the flattening views become reshapes, because oneDNN's convolutions return channels-last
tensors that a view cannot flatten. The result is a graph of ``onednn.qconv_pointwise`` /
``qlinear_pointwise`` int8 kernels (with their ReLU and output quantization fused in) that runs
eagerly, with no compiler. Written by hand where torchao has no function that takes fixed grids
or a dynamic batch.
"""
from __future__ import annotations

import functools

import torch
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401  (registers the x86 lowering patterns)
from torch import nn
from torchao.quantization.pt2e.observer import ObserverBase
from torchao.quantization.pt2e.quantizer import (FixedQParamsQuantizationSpec, QuantizationAnnotation,
                                                 QuantizationSpec, Quantizer)

from .base import LAYER_TYPES, effective_weight

ACT_LEVELS = 255  # uint8 activation codes
WEIGHT_QMAX = 127  # int8 weight codes, narrow range
_LAYER_OPS = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


def layer_grids(model: nn.Module) -> dict:
    """{layer name: (input scale, input zero point, weight codes, weight scales)} of every
    fake-quantized Conv2d / Linear of ``model``; codes as float in the weight's shape, scales (C_out,)."""
    grids = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, LAYER_TYPES) and hasattr(m, "weight_quant"):
                scale, zp = m.act_quant.qparams()
                codes = m.weight_quant.codes(effective_weight(m).detach()).round().cpu()
                grids[name] = (float(scale), int(zp), codes, m.weight_quant.scale.detach().cpu().clone())
    return grids


def folded_scales(weight: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-channel scales that put ``weight`` (= codes x scale x a per channel, a from a folded
    BatchNorm or 1) back on ``codes``: ``|<weight, codes>| / <codes, codes>``, ``scale`` where a
    channel's codes are all zero. Shape: weight and codes (C, ...), scale (C,); returns (C,)."""
    w, k = weight.detach().double().flatten(1), codes.double().flatten(1)
    kk = (k * k).sum(1)
    s = ((w * k).sum(1).abs() / kk.clamp_min(1)).float()
    return torch.where(kk > 0, s, scale.float()).clamp_min(1e-12)


class GridObserver(ObserverBase):
    """A weight "observer" that observes nothing: its qparams are the given per-channel ``scale``
    (shape (C_out,)) with zero points 0, on the narrow int8 range."""

    def __init__(self, scale, dtype=torch.int8, qscheme=torch.per_channel_symmetric, quant_min=-WEIGHT_QMAX,
                 quant_max=WEIGHT_QMAX, ch_axis=0, is_dynamic=False, **kwargs):
        super().__init__(dtype=dtype, is_dynamic=False)
        self.qscheme, self.quant_min, self.quant_max, self.ch_axis = qscheme, quant_min, quant_max, ch_axis
        self.register_buffer("scale", scale.detach().float().clone())
        self.register_buffer("zero_point", torch.zeros(len(scale), dtype=torch.int64))

    def forward(self, x):
        return x

    def calculate_qparams(self):
        return self.scale, self.zero_point


class GridQuantizer(Quantizer):
    """Annotates each Conv2d / Linear named in ``grids`` (from :func:`layer_grids`) with its own
    grid (see the module docstring); ``annotated`` lists the layer names it annotated."""

    def __init__(self, grids: dict):
        super().__init__()
        self.grids, self.annotated = grids, []

    def annotate(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
        for node in gm.graph.nodes:
            name = _layer_name(node)
            if node.op != "call_function" or node.target not in _LAYER_OPS or name not in self.grids:
                continue
            act_scale, act_zp, codes, w_scale = self.grids[name]
            x, w = node.args[0], node.args[1]
            weight = functools.reduce(getattr, w.target.split("."), gm)  # after BatchNorm folding
            obs = GridObserver.with_args(scale=folded_scales(weight, codes, w_scale))
            node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={
                x: FixedQParamsQuantizationSpec(torch.uint8, act_scale, act_zp, 0, ACT_LEVELS, torch.per_tensor_affine),
                w: QuantizationSpec(torch.int8, obs, -WEIGHT_QMAX, WEIGHT_QMAX, torch.per_channel_symmetric, 0)},
                _annotated=True)
            self.annotated.append(name)
        return gm

    def validate(self, gm: torch.fx.GraphModule) -> None:
        pass


def _layer_name(node: torch.fx.Node) -> str | None:
    """The qualified name of the innermost module whose call made ``node``, if any."""
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else None


def lower_x86(converted: torch.fx.GraphModule, example: torch.Tensor) -> torch.fx.GraphModule:
    """A converted PT2E graph lowered to oneDNN int8 kernels for any batch size (module docstring).
    ``example``: a batch of at least 2 images."""
    from torch._export.utils import _is_cia_op
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes

    decomp = {k: v for k, v in torch.export.default_decompositions().items() if _is_cia_op(k)}
    gm = torch.export.export(converted, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},),
                             strict=False).run_decompositions(decomp).module()
    aten = torch.ops.aten
    for node in list(gm.graph.nodes):
        if node.target == aten.t.default:  # as torchao does: the patterns match permute, not t
            with gm.graph.inserting_before(node):
                node.replace_all_uses_with(gm.graph.call_function(aten.permute.default, (node.args[0], [1, 0])))
            gm.graph.erase_node(node)
    gm.recompile()
    freezing_passes(gm, (example,))
    constant_fold(gm)
    for node in gm.graph.nodes:
        if node.target == aten.view.default:
            node.target = aten.reshape.default
    gm.recompile()
    return gm


def int8_kernels(gm: torch.fx.GraphModule) -> int:
    """How many oneDNN int8 convolution / linear kernels the lowered graph calls."""
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and str(n.target).startswith("onednn.q"))
