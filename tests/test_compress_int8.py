"""The integer model on torchao (rcsweep.compress.int8, int8_pt2e): the simulated model's own grids,
BatchNorm folding, and running without a C++ compiler."""
from __future__ import annotations

import torch
from compress_helpers import config, digits_model

from rcsweep import TrialConfig
from rcsweep.compress import compress_
from rcsweep.compress.int8 import to_int8
from rcsweep.compress.int8_pt2e import folded_scales
from rcsweep.models import build_model


def test_folded_scales_put_a_rescaled_weight_back_on_its_codes():
    """A BatchNorm folded into a conv multiplies each output channel by some a (negative too): the
    grid is the same codes at scale x |a|; a channel of zero codes keeps its scale."""
    torch.manual_seed(0)
    codes = torch.randint(-127, 128, (6, 3, 3, 3)).float()
    codes[2] = 0
    scale = torch.rand(6) * 0.01 + 1e-3
    a = torch.tensor([0.5, -2.0, 3.0, -0.1, 1.0, 7.5])
    weight = codes * (scale * a).view(-1, 1, 1, 1)
    s = folded_scales(weight, codes, scale)
    assert torch.allclose(s, torch.where(codes.flatten(1).abs().sum(1) > 0, scale * a.abs(), scale), rtol=1e-6)
    assert torch.equal(torch.round(weight / s.view(-1, 1, 1, 1)), codes * a.sign().view(-1, 1, 1, 1))


def test_without_a_compiler_one_line_says_so_and_the_int8_kernels_run_eagerly(monkeypatch, capsys):
    data, model = digits_model()
    compress_(model, config(compression="quant", weight_bits=8, act_bits=8), data.val)
    int_model = to_int8(model, data.val[0])
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)  # or a cached build needs no compiler
    x = data.test[0][:50]
    with torch.no_grad():
        out = int_model(x)
        eager = int_model.lowered(x)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("rcsweep: int8:")]
    assert len(lines) == 1 and "could not compile" in lines[0] and "uncompiled" in lines[0]
    assert int_model.backend == "onednn-eager" and int_model.kernels == 5 and torch.allclose(out, eager, atol=1e-5)


def test_int8_resnet_folds_batchnorm_onto_the_same_grid():
    """ResNet's convs are followed by BatchNorm, which PT2E folds into the weights: the integer
    model still predicts what the simulated one does."""
    torch.manual_seed(0)
    model = build_model("resnet18", "cifar10", 0.125)
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model.train()(torch.rand(32, 3, 32, 32))
    x = torch.rand(64, 3, 32, 32)
    compress_(model.eval(), TrialConfig(dataset="cifar10", model="resnet18", width=0.125, compression="quant",
                                        weight_bits=8, act_bits=8), (x, torch.zeros(64, dtype=torch.long)), "cpu")
    int_model = to_int8(model, x, compile=False)
    xt = torch.rand(100, 3, 32, 32)
    with torch.no_grad():
        sim, out = model(xt), int_model(xt)
    assert int_model.kernels == sum(hasattr(m, "weight_quant") for m in model.modules())
    assert (sim.argmax(1) == out.argmax(1)).float().mean() >= 0.98
    assert (sim - out).abs().max() <= 0.02 * sim.abs().max()
