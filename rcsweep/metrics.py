"""Efficiency metrics counted on the actual (compressed) model, and what each one means.

- ``params``: parameters the model holds (after channel removal; a pruned layer's mask is a
  buffer, its weights count once). ``params_nonzero``: of those, the ones whose effective value
  (mask applied, fake-quantized) is not zero.
- ``sparsity_measured``: the fraction of the *dense* model's prunable weights (every Conv2d /
  Linear weight except the classifier's) that are gone (removed channels) or zero (masked, or
  rounded to zero by quantization). ``channels_removed``: the fraction of the prunable layers'
  output channels that structured pruning removed.
- ``model_bits``: bits to store the model for inference. Each Conv2d / Linear weight tensor is
  stored either dense (``numel x b``) or as a bitmask of its nonzeros plus the nonzero values
  (``numel x 1 + nonzero x b``), whichever is smaller; ``b`` is the weight bit-width (32 for float).
  The bitmask is the index overhead of unstructured pruning; removed channels cost nothing.
  Quantized layers add a 32-bit scale per output channel and 64 bits for their activation range;
  biases and every other parameter (BatchNorm) count 32 bits. Buffers that dense and compressed
  models share (BatchNorm statistics, the input normalisation) are not counted in either.
  ``dense_model_bits`` = 32 x the dense model's parameters.
- ``macs``: multiply-accumulates of one forward pass of one example as the kernels run them (a
  removed channel saves its MACs; a zero weight in a dense kernel does not). ``macs_nonzero``:
  MACs with a nonzero weight, what sparse hardware would execute. ``bops`` = sum over layers of
  ``macs_nonzero x weight bits x activation bits`` (32 for float).
- ``weight_bits_measured``: the bits that the widest quantized layer's integer codes need, read
  from the weights themselves (32 if some layer's weights are off an integer grid or not quantized).
- ``latency_ms_b1`` / ``latency_ms_b128``: median CPU wall time of one forward pass at batch 1 and
  128 (``torch.inference_mode``, ``torch.get_num_threads()`` threads, recorded as
  ``latency_threads``), on the integer model where one exists (w8a8: torchao's, compiled by
  Inductor, whose compilation for each batch size happens in the untimed warm-up;
  :mod:`rcsweep.compress.int8`), otherwise on an eager float model of the same shape (sub-8-bit and unstructured sparsity get no faster kernels here). In a sweep other
  trials may share the machine; benchmarks/bench_compression.py measures on an idle one.

Training FLOPs are estimated as 2 * MACs (one forward) * 3 (forward and backward) per example and
pass; an adversarial example costs ``1 + attack_steps`` such passes. Evaluation and screening FLOPs
are counted (:class:`PassCounter`): the examples through every forward pass of the evaluated model,
x3 where autograd records (an attack's forward and backward), 2 FLOPs per MAC.
"""
from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn

from .compress.base import LAYER_TYPES, effective_weight, layers_in_order, prunable_layers
from .compress.int8 import float_copy, has_int8, to_int8
from .device import rng_kept


def count_macs(model: nn.Module, input_shape: tuple) -> int:
    """MACs of one forward pass of one example of shape ``input_shape`` (C, H, W)."""
    return sum(s["macs"] for s in layer_stats(model, input_shape))


def layer_stats(model: nn.Module, input_shape: tuple) -> list[dict]:
    """Per Conv2d / Linear, in execution order: name, macs, macs_nonzero, numel, nonzero, weight and
    activation bits, out_channels."""
    positions = {}

    def hook(mod, inp, out):
        positions[mod] = out.numel() // (out.shape[0] * out.shape[1])  # output pixels per channel

    layers = [m for m in model.modules() if isinstance(m, LAYER_TYPES)]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        order = layers_in_order(model, input_shape)
    finally:
        for h in handles:
            h.remove()
    stats = []
    with torch.no_grad():
        for name, m in order:
            w = effective_weight(m)
            nnz = int((w != 0).sum())
            wq, aq = getattr(m, "weight_quant", None), getattr(m, "act_quant", None)
            stats.append({"name": name, "macs": w.numel() * positions[m], "macs_nonzero": nnz * positions[m],
                          "numel": w.numel(), "nonzero": nnz, "weight_bits": wq.bits if wq is not None else 32,
                          "act_bits": aq.bits if aq is not None else 32, "out_channels": w.shape[0],
                          "bias": m.bias.numel() if m.bias is not None else 0})
    return stats


def model_bits(model: nn.Module, stats: list[dict]) -> int:
    """Storage bits of ``model`` as described in the module docstring (``stats`` from :func:`layer_stats`)."""
    total = 0
    for s in stats:
        b = s["weight_bits"]
        total += min(s["numel"] * b, s["numel"] + s["nonzero"] * b) + 32 * s["bias"]
        if b < 32:
            total += 32 * s["out_channels"]
        if s["act_bits"] < 32:
            total += 64
    for m in model.modules():
        if not isinstance(m, LAYER_TYPES):
            total += 32 * sum(p.numel() for p in m.parameters(recurse=False))
    return int(total)


def weight_bits_measured(model: nn.Module) -> int:
    """Bits the widest layer's integer weight codes need (32: some layer is float)."""
    need = 1
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, LAYER_TYPES):
                continue
            wq = getattr(m, "weight_quant", None)
            if wq is None or wq.bits >= 32:
                return 32
            codes = effective_weight(m) / wq.scale.view(-1, *[1] * (m.weight.dim() - 1))
            if (codes - codes.round()).abs().max() > 0.01:  # float32 division leaves ~1e-3 at 16 bits
                return 32
            need = max(need, math.ceil(math.log2(2 * int(codes.round().abs().max()) + 1)))
    return need


def training_flops(macs: int, examples: int, epochs: int, passes_per_example: int) -> float:
    """Estimated training FLOPs: 2 FLOPs per MAC, x3 for forward + backward."""
    return 2.0 * macs * 3 * examples * epochs * passes_per_example


class PassCounter:
    """Counts the example passes through ``model``'s forward calls inside ``with PassCounter(model) as c:``:
    each example of a forward run while autograd records (an attack's forward, then its backward
    pass) counts 3, one under ``no_grad`` counts 1. :meth:`flops` = 2 x ``macs`` x passes, as
    :func:`training_flops` counts. Only ``model`` is hooked: a float twin's passes are not counted."""

    def __init__(self, model: nn.Module):
        self.model, self.passes, self._handle = model, 0, None

    def _hook(self, module, inputs, output):
        self.passes += inputs[0].shape[0] * (3 if torch.is_grad_enabled() else 1)

    def __enter__(self) -> "PassCounter":
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    def flops(self, macs: int) -> float:
        """FLOPs of the passes counted, for a model of ``macs`` MACs per example."""
        return 2.0 * macs * self.passes


def latency_ms(model: nn.Module, input_shape: tuple, batch: int, min_seconds: float = 0.3, min_reps: int = 3) -> float:
    """Median wall time (ms) of one CPU forward pass of ``batch`` random images, after one warm-up."""
    x = torch.rand(batch, *input_shape)
    times = []
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        while len(times) < min_reps or time.perf_counter() - start < min_seconds:
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def inference_model(model: nn.Module, input_shape: tuple, int_model: nn.Module | None = None):
    """(model to time on the CPU, its name): the integer model where one exists, else a float copy."""
    if int_model is not None:
        return int_model, "int8"
    if has_int8(model):
        return to_int8(model, torch.rand(32, *input_shape)), "int8"  # for timing only: values do not matter
    return float_copy(model), "float32"


def efficiency(model: nn.Module, cfg, input_shape: tuple, dense_params: int, int_model: nn.Module | None = None,
               latency: bool = True) -> dict:
    """Per-trial efficiency metrics of ``model`` (see the module docstring); ``dense_params``: the
    parameters of the dense model it was compressed from; ``int_model``: its integer model, if built.
    Torch's random state is left as it was (:func:`rcsweep.device.rng_kept`): it builds a dense
    model to count channels and times random inputs, and early stopping measures sizes mid-trial."""
    with rng_kept():
        return _efficiency(model, cfg, input_shape, dense_params, int_model, latency)


def _efficiency(model: nn.Module, cfg, input_shape: tuple, dense_params: int, int_model, latency: bool) -> dict:
    from .models import build_model

    stats = layer_stats(model, input_shape)
    dense = build_model(cfg.model, cfg.dataset, cfg.width)
    dense_prunable = prunable_layers(dense, input_shape)
    names = {n for n, _ in prunable_layers(model, input_shape)}
    nnz_prunable = sum(s["nonzero"] for s in stats if s["name"] in names)
    ch_dense = sum(m.weight.shape[0] for _, m in dense_prunable)
    params = sum(p.numel() for p in model.parameters())
    out = {"params": params, "params_nonzero": _params_nonzero(model, stats),
           "sparsity_measured": 1 - nnz_prunable / max(sum(m.weight.numel() for _, m in dense_prunable), 1),
           "channels_removed": 1 - sum(s["out_channels"] for s in stats if s["name"] in names) / max(ch_dense, 1),
           "model_bits": model_bits(model, stats), "dense_model_bits": 32 * dense_params,
           "weight_bits_measured": weight_bits_measured(model),
           "macs": sum(s["macs"] for s in stats), "macs_nonzero": sum(s["macs_nonzero"] for s in stats),
           "bops": sum(s["macs_nonzero"] * s["weight_bits"] * s["act_bits"] for s in stats)}
    if latency:
        m, kind = inference_model(model, input_shape, int_model)
        out.update(latency_ms_b1=latency_ms(m, input_shape, 1), latency_ms_b128=latency_ms(m, input_shape, 128),
                   latency_model=kind, latency_threads=torch.get_num_threads())
    return out


def _params_nonzero(model: nn.Module, stats: list[dict]) -> int:
    """Nonzero parameters, counting each Conv2d / Linear weight by its effective (masked, quantized) value."""
    n = sum(s["nonzero"] for s in stats)
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not (isinstance(m, LAYER_TYPES) and name in ("weight", "weight_orig")):
                n += int((p != 0).sum())
    return n
