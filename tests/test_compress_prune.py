"""Unstructured magnitude pruning: scopes, extremes, persistence of the masks."""
from __future__ import annotations

import copy

import pytest
import torch
from compress_helpers import config

from rcsweep import load_model, save_model
from rcsweep.compress import compress_, prunable_layers
from rcsweep.models import build_model

SHAPE = (1, 8, 8)


def _model_and_calib(seed=0):
    torch.manual_seed(seed)
    return build_model("digits_cnn", "digits"), (torch.rand(64, *SHAPE), torch.randint(0, 10, (64,)))


def _zero_fraction(m):
    return float((m.weight_mask == 0).float().mean())


def test_layer_scope_prunes_every_layer_to_the_target():
    model, calib = _model_and_calib()
    compress_(model, config(compression="prune", sparsity=0.6, prune_scope="layer"), calib)
    for _, m in prunable_layers(model, SHAPE):
        assert _zero_fraction(m) == pytest.approx(0.6, abs=1 / m.weight.numel())


def test_global_scope_hits_the_total_and_removes_the_smallest_weights():
    model, calib = _model_and_calib()
    dense = copy.deepcopy(model)
    comp = compress_(model, config(compression="prune", sparsity=0.6), calib)
    layers = prunable_layers(model, SHAPE)
    assert comp.info["scope"] == "global" and comp.info["masked_fraction"] == pytest.approx(0.6, abs=1e-4)
    assert len({round(_zero_fraction(m), 2) for _, m in layers}) > 1  # layers differ, unlike per-layer
    kept = torch.cat([m.weight_orig[m.weight_mask == 1].abs() for _, m in layers])
    gone = torch.cat([w.abs() for (_, d), (_, m) in zip(prunable_layers(dense, SHAPE), layers)
                      for w in [d.weight[m.weight_mask == 0]]])
    assert gone.max() <= kept.min()
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert not hasattr(classifier, "weight_mask")  # the classifier is never pruned


@pytest.mark.parametrize("sparsity", [0.0, 0.99])
def test_extremes(sparsity):
    model, calib = _model_and_calib()
    compress_(model, config(compression="prune", sparsity=sparsity), calib)
    zeros = sum(int((m.weight == 0).sum()) for _, m in prunable_layers(model, SHAPE))
    total = sum(m.weight.numel() for _, m in prunable_layers(model, SHAPE))
    assert zeros / total == pytest.approx(sparsity, abs=0.001)
    assert torch.isfinite(model(calib[0])).all()


def test_enforce_keeps_masked_weights_at_zero_through_sgd():
    """Momentum and weight decay move no masked weight, in the forward pass or in the saved tensor."""
    model, (x, y) = _model_and_calib()
    comp = compress_(model, config(compression="prune", sparsity=0.5), (x, y))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        comp.enforce()
    for _, m in prunable_layers(model, SHAPE):
        assert (m.weight_orig[m.weight_mask == 0] == 0).all()
        assert _zero_fraction(m) == float(((m.weight_orig * m.weight_mask) == 0).float().mean())


def test_masks_survive_save_and_load(tmp_path):
    model, calib = _model_and_calib()
    cfg = config(compression="prune", sparsity=0.7, prune_scope="layer")
    comp = compress_(model, cfg, calib)
    model(calib[0]).sum().backward()  # a forward with gradients must not stop the model being copied/saved
    copy.deepcopy(model)
    save_model(model, tmp_path, cfg, {"compression": comp.info})
    loaded = load_model(tmp_path)
    for (_, a), (_, b) in zip(prunable_layers(model, SHAPE), prunable_layers(loaded, SHAPE)):
        assert not hasattr(b, "weight_mask")  # the mask is baked into a plain weight: same zeros, read directly
        assert torch.equal(b.weight, a.weight_orig * a.weight_mask)
        assert torch.equal(b.weight == 0, a.weight_mask == 0)
    assert torch.equal(model.eval()(calib[0]), loaded(calib[0]))
