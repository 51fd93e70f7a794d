"""A real integer (w8a8) model from a fake-quantized one, for CPU latency and a transfer check.

:func:`to_int8` uses torchao's PT2E flow for x86 (torchao 0.18; :mod:`.int8_pt2e`): the float twin
(:func:`float_copy`) is captured by ``torch.export.export`` with a dynamic batch dimension,
annotated by rcsweep's own quantizer with the simulated model's grids (uint8 per-tensor
activations at each layer's calibrated range, int8 per-channel narrow-range weights at its own
scales: nothing is re-calibrated, no observer looks at data), ``prepare_pt2e`` / ``convert_pt2e``
turn it into quantize / dequantize ops around float convolutions, and Inductor's x86 patterns
(registered by torchao) lower those to oneDNN int8 kernels: ``onednn.qconv_pointwise`` /
``qlinear_pointwise`` with uint8 inputs, int8 weights, a float32 bias, the ReLU fused and the next
layer's input quantization fused into the output where one follows. Tensors the simulated model
does not quantize (residual sums, the logits) stay float32. Building it takes about 4 s for the
study's FashionMNIST net (one CPU core, most of it the lowering); :class:`Int8Model` checks that
every quantized layer became an int8 kernel.

:class:`Int8Model` runs the converted graph compiled by Inductor (``torch.compile`` with
freezing, static shapes), which also fuses the remaining elementwise work (the input
normalisation and quantization) into C++ loops; it is compiled for batches of 1 and of ``CHUNK``
(128) only, other batch sizes running as padded chunks of 128, so that a trial's integer check
and latency metric compile it twice (static shapes because with a dynamic batch Inductor's
oneDNN convolution lowering fails its stride check on the one-channel FashionMNIST input, torch
2.14.1 with torchao 0.18). Compiling needs a C++ compiler at run time and costs a trial
9 to 15 s per batch size for the FashionMNIST net on this project's loaded two-core machine (about
17 s for both in benchmarks/RESULTS.md, against 1 s for the whole old FX build). Torch's own caches
keep the result: the FX graph cache and the compiled kernels under ``TORCHINDUCTOR_CACHE_DIR``
(default ``/tmp/torchinductor_$USER``), so the same model built again (re-evaluation, a resumed
trial, a test rerun) loads in about a second; another
model of the same architecture compiles anew, because its activation scales are constants in the
generated code. Where compiling fails (no C++ compiler), one line on stderr says so and the model
runs the lowered graph eagerly instead: the same oneDNN int8 kernels, without the fused
elementwise loops.

The old ``torch.ao.quantization`` FX path is gone from here (benchmarks/fx_int8.py keeps it as the
baseline of benchmarks/RESULTS.md). Importing torchao's x86 quantizer module, which this needs for
its lowering patterns, sets Inductor's ``pre_grad_custom_pass`` for the whole process.

Attacks never run on the integer model (it has no gradient): :func:`integer_check` crafts PGD
examples on the simulated model and measures how they transfer.
"""
from __future__ import annotations

import copy
import logging
import sys
import warnings

import torch
from torch import nn

from ..attacks import PGD, threat_model
from ..batching import accuracy
from .plain import plain_copy

TRANSFER_EXAMPLES = 200
CHUNK = 128  # the compiled batch size (besides 1): the latency metric's


def has_int8(model: nn.Module) -> bool:
    """Whether every quantized layer is at 8-bit weights and 8-bit activations (and there is one)."""
    q = [m for m in model.modules() if hasattr(m, "weight_quant")]
    return bool(q) and all(m.weight_quant.bits == 8 and m.act_quant.bits == 8 for m in q)


def float_copy(model: nn.Module) -> nn.Module:
    """A plain float CPU copy with the effective (masked, quantized) weights baked in and the
    pruning hooks and fake quantizers removed; activations are no longer quantized
    (:func:`~.plain.plain_copy` with ``activations="none"``)."""
    return plain_copy(model, "none")


class Int8Model(nn.Module):
    """The integer model (see the module docstring): ``converted`` (torchao's quantize / dequantize
    graph) compiled by Inductor when ``compile``, for a batch of 1 and a batch of ``CHUNK`` only
    (any other batch runs as batches of ``CHUNK``, the last one padded with zeros, so a trial
    compiles twice, whatever sizes its checks use); ``lowered`` (the same oneDNN int8 kernels, run
    eagerly, any batch size) where compiling is off or failed. ``kernels``: the int8 kernels in ``lowered``.

    Shape: images (N, C, H, W) in [0, 1] -> logits (N, classes), float32, on the CPU."""

    def __init__(self, converted: torch.fx.GraphModule, lowered: torch.fx.GraphModule, compile: bool = True):
        super().__init__()
        from .int8_pt2e import int8_kernels

        self.lowered, self.compile, self.kernels = lowered, compile, int8_kernels(lowered)
        self.compiled = torch.compile(converted, dynamic=False) if compile else None
        self.batch_sizes: set[int] = set()  # compiled so far

    @property
    def backend(self) -> str:
        """``"inductor"`` (compiled) or ``"onednn-eager"`` (the lowered graph)."""
        return "inductor" if self.compile else "onednn-eager"

    def train(self, mode: bool = True) -> Int8Model:
        """Only the flag changes: the graphs have no training mode (exported ones refuse ``train()``)."""
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compile:
            return self.lowered(x)
        if len(x) in (1, CHUNK):
            return self._compiled(x)
        outs = []
        for xb in x.split(CHUNK):
            pad = CHUNK - len(xb)
            out = self._compiled(torch.cat([xb, xb.new_zeros(pad, *xb.shape[1:])]) if pad else xb)
            outs.append(out[:len(xb)])
        return torch.cat(outs) if outs else self.lowered(x)

    def _compiled(self, x: torch.Tensor) -> torch.Tensor:
        """The compiled graph on ``x`` (compiling it for this batch size first), or, where that
        fails, one line on stderr and the lowered graph from then on."""
        n = len(x)
        if not self.compile:
            return self.lowered(x)
        try:
            with torch._inductor.config.patch(freezing=True), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a torch.tensor(tensor) notice from Inductor's oneDNN lowering
                out = self.compiled(x)  # freezing: the int8 weights become prepacked constants
        except Exception as e:  # noqa: BLE001 - Inductor's errors for a missing compiler vary; say which
            if n in self.batch_sizes:
                raise
            self.compile = False
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            print(f"rcsweep: int8: Inductor could not compile the integer model ({type(e).__name__}: {reason}); "
                  "running its oneDNN int8 kernels uncompiled instead", file=sys.stderr)
            return self.lowered(x)
        self.batch_sizes.add(n)
        return out


def to_int8(model: nn.Module, calib_x: torch.Tensor, compile: bool = True) -> Int8Model:
    """The integer CPU model of a w8a8 fake-quantized ``model`` (see the module docstring).
    ``calib_x``: example images, at least 2 (their values do not matter: the grids are the
    model's own); ``compile``: compile with Inductor (else run the lowered graph eagerly).
    Raises RuntimeError if a quantized layer did not become an int8 kernel."""
    pt2e = _pt2e()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = calib_x[:2].detach().cpu().float()
    if len(example) < 2:
        example = example.expand(2, *example.shape[1:]).clone()  # a batch of 1 would fix the batch size
    grids = pt2e.layer_grids(model)
    quantizer = pt2e.GridQuantizer(grids)
    graph = torch.export.export(float_copy(model), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    converted = convert_pt2e(prepare_pt2e(graph.module(), quantizer))
    lowered = pt2e.lower_x86(copy.deepcopy(converted), example)
    int_model = Int8Model(converted, lowered, compile)
    if int_model.kernels != len(quantizer.annotated) or len(quantizer.annotated) != len(grids):
        raise RuntimeError(f"int8: {len(grids)} quantized layers, {len(quantizer.annotated)} annotated, "
                           f"{int_model.kernels} lowered to oneDNN int8 kernels")
    return int_model.eval()


def _pt2e():
    """:mod:`.int8_pt2e`, imported on first use (it imports torchao; torchao 0.18 on torch 2.14
    logs a warning about an Enum on import, silenced here)."""
    quiet = logging.getLogger("torch.utils._pytree")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from . import int8_pt2e
    finally:
        quiet.setLevel(level)
    return int8_pt2e


def integer_check(model: nn.Module, cfg, data, device) -> tuple[dict, nn.Module | None]:
    """For w8a8 models: (metrics, integer model); otherwise ({}, None).

    Metrics: ``int8_clean_acc`` and ``sim_clean_acc`` on the test split, ``int8_agreement`` (the
    fraction of test images on which both predict the same class), and the transfer check on the
    first ``TRANSFER_EXAMPLES`` test images: ``transfer_sim_robust_acc`` (accuracy of the simulated
    model on PGD examples crafted on it, ``eval_steps`` steps at ``eps_eval``) and
    ``int8_transfer_robust_acc`` (accuracy of the integer model on those same examples)."""
    if not has_int8(model):
        return {}, None
    int_model = to_int8(model, data.val[0])
    x, y = data.test
    model.eval()
    with torch.no_grad():
        sim_pred = torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in x.split(512)])
        int_pred = torch.cat([int_model(xb.cpu()).argmax(1) for xb in x.split(512)])
    xt, yt = x[:TRANSFER_EXAMPLES].to(device), y[:TRANSFER_EXAMPLES].to(device)
    x_adv = PGD(threat_model(cfg.norm, cfg.eps_eval), steps=cfg.eval_steps)(model, xt, yt)
    metrics = {"int8_clean_acc": (int_pred == y).float().mean().item(),
               "sim_clean_acc": (sim_pred == y).float().mean().item(),
               "int8_agreement": (int_pred == sim_pred).float().mean().item(),
               "transfer_examples": len(xt), "transfer_eps": cfg.eps_eval,
               "transfer_sim_robust_acc": accuracy(model, x_adv, yt, device),
               "int8_transfer_robust_acc": accuracy(int_model, x_adv.cpu(), yt.cpu(), "cpu")}
    return metrics, int_model
