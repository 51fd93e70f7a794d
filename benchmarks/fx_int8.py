"""The integer model as rcsweep built it before torchao (issue 17): torch's static quantization
(``torch.ao.quantization`` FX graph mode) on oneDNN kernels, kept only as the baseline that
bench_compression.py times against the torchao model (rcsweep.compress.int8).

int8 per-channel weights (min/max over [-127, 127], which recovers the simulated scales where a
channel's largest weight sits at code 127), uint8 per-tensor activations with the observer in
front of each quantized layer pinned to that layer's calibrated range (a shared input keeps the
first layer's), int32 bias; other tensors the integer graph quantizes (the logits) calibrated on
the given images. ``torch.ao.quantization`` is deprecated in favour of torchao; its warnings are
silenced here.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from rcsweep.compress.int8 import float_copy

CALIB_EXAMPLES = 512
ENGINE = "onednn"


@contextlib.contextmanager
def _engine(name: str):
    old = torch.backends.quantized.engine
    if name in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def fx_int8(model: nn.Module, calib_x: torch.Tensor) -> nn.Module:
    """The FX integer CPU model of a w8a8 fake-quantized ``model``."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import MinMaxObserver, ObserverBase, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    ranges = {n: (float(m.act_quant.lo), float(m.act_quant.hi)) for n, m in model.named_modules()
              if hasattr(m, "act_quant") and m.act_quant.bits == 8}
    qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                                quant_min=-127, quant_max=127))
    x = calib_x[:CALIB_EXAMPLES].cpu()
    with warnings.catch_warnings(), _engine(ENGINE):
        warnings.simplefilter("ignore")
        prepared = prepare_fx(float_copy(model), QConfigMapping().set_global(qconfig), example_inputs=(x[:1],))
        with torch.no_grad():
            prepared(x)
        pinned = set()
        for node in prepared.graph.nodes:
            if node.op != "call_module" or node.target not in ranges or not node.args:
                continue
            src = node.args[0]
            if getattr(src, "op", None) != "call_module" or src.target in pinned:
                continue
            obs = prepared.get_submodule(src.target)
            if isinstance(obs, ObserverBase):
                lo, hi = ranges[node.target]
                obs.min_val.fill_(lo)
                obs.max_val.fill_(hi)
                pinned.add(src.target)
        return convert_fx(prepared).eval()
