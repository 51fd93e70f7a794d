"""A real integer (w8a8) model from a fake-quantized one, for CPU latency and a transfer check.

:func:`to_int8` uses torch's static quantization (``torch.ao.quantization`` FX graph mode) with the
oneDNN kernels where torch has them: int8 per-channel weights, uint8 per-tensor activations, int32
bias. oneDNN rather than fbgemm (torch's x86 default) because on CPUs without AVX512-VNNI fbgemm
sums pairs of uint8 x int8 products in saturating int16 and so departs from the simulated model
unless activations are cut to 7 bits, and because it measured faster at batch 128 here
(benchmarks/RESULTS.md). The packed weights keep their kernels whatever engine is selected later.
It reproduces
the simulated model's grids rather than re-calibrating: the weights given to it are already on
the grid and the per-channel min/max observer (range +-127) recovers exactly the same scales; the
activation observer in front of each quantized layer is pinned to that layer's calibrated range.
Other tensors that the integer graph quantizes (the logits, residual sums) are calibrated on the
given images. ``torch.ao.quantization`` warns that it is deprecated in favour of torchao's PT2E
flow; torchao is not a dependency here, so the warnings are silenced where it is called.

Attacks never run on the integer model (it has no gradient): :func:`integer_check` crafts PGD
examples on the simulated model and measures how they transfer.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from ..attacks import PGD, threat_model
from ..batching import accuracy
from .plain import plain_copy

TRANSFER_EXAMPLES = 200
CALIB_EXAMPLES = 512
ENGINE = "onednn"


@contextlib.contextmanager
def _engine(name: str):
    """Select torch's quantized engine ``name`` (if this build has it) for the duration."""
    old = torch.backends.quantized.engine
    if name in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def has_int8(model: nn.Module) -> bool:
    """Whether every quantized layer is at 8-bit weights and 8-bit activations (and there is one)."""
    q = [m for m in model.modules() if hasattr(m, "weight_quant")]
    return bool(q) and all(m.weight_quant.bits == 8 and m.act_quant.bits == 8 for m in q)


def float_copy(model: nn.Module) -> nn.Module:
    """A plain float CPU copy with the effective (masked, quantized) weights baked in and the
    pruning hooks and fake quantizers removed; activations are no longer quantized
    (:func:`~.plain.plain_copy` with ``activations="none"``)."""
    return plain_copy(model, "none")


def to_int8(model: nn.Module, calib_x: torch.Tensor) -> nn.Module:
    """The integer CPU model of a w8a8 fake-quantized ``model`` (see the module docstring)."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    ranges = {n: (float(m.act_quant.lo), float(m.act_quant.hi)) for n, m in model.named_modules()
              if hasattr(m, "act_quant") and m.act_quant.bits == 8}
    qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                                quant_min=-127, quant_max=127))
    x = calib_x[:CALIB_EXAMPLES].cpu()
    with warnings.catch_warnings(), _engine(ENGINE):
        warnings.simplefilter("ignore")  # torch.ao deprecation notices (see the module docstring)
        prepared = prepare_fx(float_copy(model), QConfigMapping().set_global(qconfig), example_inputs=(x[:1],))
        with torch.no_grad():
            prepared(x)
        _pin_input_ranges(prepared, ranges)
        return convert_fx(prepared).eval()


def _pin_input_ranges(prepared: torch.fx.GraphModule, ranges: dict) -> None:
    """Set the observer feeding each quantized layer to that layer's fake-quant range."""
    from torch.ao.quantization.observer import ObserverBase

    pinned = set()
    for node in prepared.graph.nodes:
        if node.op != "call_module" or node.target not in ranges or not node.args:
            continue
        src = node.args[0]
        if getattr(src, "op", None) != "call_module" or src.target in pinned:
            continue  # an input shared by two layers keeps the first layer's range
        obs = prepared.get_submodule(src.target)
        if isinstance(obs, ObserverBase):
            lo, hi = ranges[node.target]
            obs.min_val.fill_(lo)
            obs.max_val.fill_(hi)
            pinned.add(src.target)


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
