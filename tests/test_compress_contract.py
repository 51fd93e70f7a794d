"""The contract every registered compressor keeps (one suite, parametrized over COMPRESSORS):
target reached, forward works, input gradient non-zero, fine-tuning keeps the compression, and
save -> rcsweep.load_model gives identical outputs."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from compress_helpers import cases, config, digits_model, small_train

from rcsweep import load_model, save_model
from rcsweep.compress import compress_, prunable_layers
from rcsweep.config import uses_pruning, uses_quant
from rcsweep.metrics import efficiency
from rcsweep.pipeline import finetune
from rcsweep.train import accuracy

SHAPE = (1, 8, 8)
CASES = cases()


@pytest.fixture(scope="module", params=sorted(CASES), ids=sorted(CASES))
def compressed(request):
    """(cfg, model, comp, data, dense_model) for one compressor, compressed once per module."""
    data, model = digits_model()
    dense = copy.deepcopy(model)
    cfg = config(**CASES[request.param], finetune="adversarial", finetune_epochs=1, attack_steps=3)
    comp = compress_(model, cfg, calib=data.val, device="cpu")
    return cfg, model, comp, data, dense


@pytest.fixture(scope="module")
def finetuned(compressed):
    """The same model after one epoch of adversarial fine-tuning (PGD-3) on 400 images."""
    cfg, model, comp, data, dense = compressed
    model, comp = copy.deepcopy((model, comp))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finetune(model, comp, cfg, small_train(data), "cpu")
    return cfg, model, comp, before


def assert_compression_in_force(model, cfg, dense):
    eff = efficiency(model, cfg, SHAPE, sum(p.numel() for p in dense.parameters()), latency=False)
    if cfg.compression in ("prune", "prune_quant"):
        assert eff["sparsity_measured"] == pytest.approx(cfg.sparsity, abs=0.005)
    if cfg.compression.startswith("prune_structured"):
        have = {n: m.weight.shape[0] for n, m in prunable_layers(model, SHAPE)}
        for n, m in prunable_layers(dense, SHAPE):
            c = m.weight.shape[0]
            assert 0 <= (c - have[n]) / c - cfg.sparsity < 1 / c  # this fraction of each layer's channels gone
        assert eff["channels_removed"] == pytest.approx(cfg.sparsity, abs=0.02)
        assert eff["params"] < 0.5 * sum(p.numel() for p in dense.parameters())
    if uses_quant(cfg.compression):
        assert eff["weight_bits_measured"] == cfg.weight_bits
        layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        for m in layers:
            assert m.act_quant.bits == cfg.act_bits
            stored = m.weight_orig if hasattr(m, "weight_orig") else m.weight  # what the state_dict holds
            codes = stored / m.weight_quant.scale.view(-1, *[1] * (stored.dim() - 1))
            assert torch.allclose(codes, codes.round(), atol=1e-3), "stored weights are off the grid"
            assert codes.round().abs().max() <= 2 ** (cfg.weight_bits - 1) - 1
    return eff


def test_target_reached(compressed):
    cfg, model, comp, data, dense = compressed
    assert comp.info["method"] == cfg.compression
    assert_compression_in_force(model, cfg, dense)


def test_forward_works(compressed):
    cfg, model, comp, data, dense = compressed
    x, y = data.test
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape == (len(x), 10) and torch.isfinite(out).all()
    assert accuracy(model, x, y, "cpu") > 0.85  # 4-bit and/or half the weights of a ~0.98 model


def test_input_gradient_nonzero(compressed):
    """The straight-through estimator must not mask gradients (attacks would then fake robustness)."""
    cfg, model, comp, data, dense = compressed
    x = data.test[0][:64].clone().requires_grad_(True)
    loss = F.cross_entropy(model.eval()(x), data.test[1][:64], reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    assert (g.flatten(1).abs().sum(1) > 0).float().mean() >= 0.95


def test_finetuning_keeps_compression(finetuned, compressed):
    cfg, model, comp, before = finetuned
    assert_compression_in_force(model, cfg, compressed[4])
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any(k.endswith(("weight", "weight_orig")) for k in changed), "fine-tuning changed no weight"
    if uses_pruning(cfg.compression) and not cfg.compression.startswith("prune_structured"):
        for k, v in model.state_dict().items():
            if k.endswith("weight_mask"):
                assert torch.equal(v, before[k])


def test_save_load_identical_outputs(finetuned, tmp_path):
    cfg, model, comp, _ = finetuned
    save_model(model, tmp_path, cfg, {"compression": comp.info})
    loaded = load_model(tmp_path)
    x = torch.rand(32, *SHAPE)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in loaded.state_dict().items()} == shapes  # pruned loads pruned, quantized quantized
