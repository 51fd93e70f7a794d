"""Fake quantization (grids, straight-through gradients, calibration, PTQ vs QAT) and the integer model."""
from __future__ import annotations

import copy

import pytest
import torch
from compress_helpers import config, digits_model, small_train

from rcsweep.compress import compress_
from rcsweep.compress.fake_quant import ActFakeQuant, WeightFakeQuant, weight_clip_ratios
from rcsweep.compress.int8 import integer_check
from rcsweep.metrics import weight_bits_measured
from rcsweep.pipeline import finetune
from rcsweep.train import accuracy


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
def test_weight_grid_per_channel(bits):
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3) * torch.linspace(0.1, 2, 6).view(-1, 1, 1, 1)  # channels of different scale
    q = WeightFakeQuant(bits, 6)
    q.calibrate(w)
    codes = q.codes(q(w))
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.abs().max() <= 2 ** (bits - 1) - 1
    assert len(set(q.scale.tolist())) == 6  # one scale per output channel
    assert torch.equal(q(torch.zeros_like(w)), torch.zeros_like(w))  # zero is on the grid: pruned stays pruned


def test_activation_grid_and_float_passthrough():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(10000))
    q = ActFakeQuant(4)
    q.calibrate_next = True
    assert len(torch.unique(q(x))) <= 16
    assert torch.equal(ActFakeQuant(32)(x), x) and torch.equal(WeightFakeQuant(32, 1)(x.view(1, -1)), x.view(1, -1))


def test_straight_through_gradient():
    q = ActFakeQuant(4)
    q.lo.fill_(0.0)
    q.hi.fill_(1.0)
    x = torch.tensor([-0.5, 0.1, 0.33, 0.9, 1.5], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # identity inside the range, zero where clipped


def test_mse_clipping_beats_max_scaling_at_4_bits():
    torch.manual_seed(0)
    w = torch.randn(16, 512)
    ratios = weight_clip_ratios(w, 4)
    assert (ratios < 1).all()
    amax = w.abs().amax(1, keepdim=True)

    def err(scale):
        return ((torch.clamp(torch.round(w / scale), -7, 7) * scale - w) ** 2).sum()

    assert err(ratios.view(-1, 1) * amax / 7) < 0.8 * err(amax / 7)


def test_ptq_4bit_keeps_digits_accuracy():
    data, model = digits_model()
    float_acc = accuracy(model, *data.test, "cpu")
    compress_(model, config(compression="quant", weight_bits=4, act_bits=8), data.val)
    assert weight_bits_measured(model) == 4
    assert accuracy(model, *data.test, "cpu") >= float_acc - 0.03


def _scales(model):
    return {n: b.clone() for n, b in model.named_buffers() if n.endswith(("weight_quant.scale", "act_quant.hi"))}


@pytest.mark.parametrize("mode", ["ptq", "qat"])
def test_ptq_freezes_and_qat_adapts_the_quantizers(mode):
    data, model = digits_model()
    cfg = config(compression="quant", weight_bits=4, quant_mode=mode, finetune="clean", finetune_epochs=1, lr=0.2)
    comp = compress_(model, cfg, data.val)
    assert comp.info["mode_effective"] == mode
    before = _scales(model)
    finetune(model, comp, cfg, small_train(data), "cpu")
    after = _scales(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    if mode == "ptq":
        assert not changed
    else:  # every weight grid follows its weights; activation ranges follow the batches (but the image's)
        assert {n for n in before if n.endswith("weight_quant.scale")} <= changed
        assert len([n for n in changed if n.endswith("act_quant.hi")]) >= 3


def test_qat_without_finetuning_is_recorded_as_ptq():
    data, model = digits_model()
    comp = compress_(model, config(compression="quant", quant_mode="qat"), data.val)
    assert comp.info["mode"] == "qat" and comp.info["mode_effective"] == "ptq"
    assert "no training loop" in comp.info["note"]


def test_int8_model_agrees_with_the_simulated_one():
    data, model = digits_model()
    cfg = config(compression="prune_structured_quant", sparsity=0.5, weight_bits=8, act_bits=8)
    compress_(model, cfg, data.val)
    metrics, int_model = integer_check(model, cfg, data, "cpu")
    # real integer kernels: one oneDNN int8 convolution / linear per quantized layer, compiled by Inductor
    assert int_model.kernels == sum(hasattr(m, "weight_quant") for m in model.modules()) == 5
    assert int_model.backend == "inductor"
    assert abs(metrics["int8_clean_acc"] - metrics["sim_clean_acc"]) <= 0.01
    assert metrics["int8_agreement"] >= 0.98
    assert metrics["transfer_examples"] == 200
    # examples crafted on the simulated model transfer to the integer one (it is no more robust)
    assert metrics["int8_transfer_robust_acc"] <= metrics["transfer_sim_robust_acc"] + 0.05
    assert metrics["transfer_sim_robust_acc"] < metrics["sim_clean_acc"]


def test_no_integer_model_below_8_bits():
    data, model = digits_model()
    cfg = config(compression="quant", weight_bits=4)
    compress_(copy.deepcopy(model), cfg, data.val)
    assert integer_check(model, cfg, data, "cpu") == ({}, None)


def test_minmax_tensor_scheme_is_the_studys_quantizer():
    """quant_scheme minmax_tensor: one scale per weight tensor (max|w| / qmax) and activation
    ranges at the observed min and max; the default mse_channel clips per channel."""
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3) * torch.linspace(0.1, 2, 6).view(-1, 1, 1, 1)
    q = WeightFakeQuant(4, 6, "minmax_tensor")
    q.calibrate(w)
    assert torch.allclose(q.scale, torch.full((6,), float(w.abs().max()) / 7))
    # the narrow channels lose nearly all their levels: the error the study's 4-bit collapse suggests
    mse = WeightFakeQuant(4, 6)
    mse.calibrate(w)
    err_tensor, err_channel = ((q(w) - w) ** 2).mean(), ((mse(w) - w) ** 2).mean()
    assert err_tensor > 1.5 * err_channel
    x = torch.cat([torch.relu(torch.randn(10000)), torch.tensor([25.0])])  # one outlier
    a, b = ActFakeQuant(4, scheme="minmax_tensor"), ActFakeQuant(4)
    a.calibrate_next = b.calibrate_next = True
    a(x), b(x)
    assert float(a.lo) == 0.0 and float(a.hi) == 25.0  # min-max keeps the outlier
    assert float(b.hi) < 25.0  # MSE-optimal clipping cuts it


def test_minmax_tensor_compression_end_to_end(tmp_path):
    from rcsweep import TrialConfig, load_model, run_trial

    rec = run_trial(TrialConfig(dataset="digits", pretrain_epochs=3, batch_size=32, test_size=60, eval_steps=2,
                                eval_restarts=1, compression="quant", weight_bits=4, act_bits=4,
                                quant_scheme="minmax_tensor"), tmp_path, device="cpu")
    assert rec["params"]["quant_scheme"] == "minmax_tensor"
    model = load_model(tmp_path)
    for m in model.modules():
        if hasattr(m, "weight_quant"):
            assert m.weight_quant.scheme == "minmax_tensor" and len(set(m.weight_quant.scale.tolist())) == 1
    assert TrialConfig(compression="quant").quant_scheme == "mse_channel"
    with pytest.raises(Exception, match="quant_scheme"):
        TrialConfig(compression="prune", quant_scheme="minmax_tensor")
