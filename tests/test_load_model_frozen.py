"""What ``rcsweep.load_model`` returns is the model that was evaluated, plain and frozen, for every
compression method: its parameters read directly (no forward pass) are the evaluated weights (pruned
zeros included, no ``weight_orig`` / ``weight_mask`` whose ``.weight`` only a forward pre-hook
recomputes; quantized weights on their grid), train-mode calls move no quantization range, its
outputs equal the in-memory model's at the end of the trial, and what rcsweep computes from a loaded
model (activation quantizers seen by the evaluation, efficiency metrics, the float twin, the int8
model) is what it computed in the trial. Files written by the current format keep loading.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

from rcsweep import TrialConfig, load_model, run_trial
from rcsweep.compress import effective_weight, is_frozen
from rcsweep.compress.fake_quant import ActFakeQuant
from rcsweep.compress.int8 import has_int8, to_int8
from rcsweep.compress_params import QuantParams, includes
from rcsweep.evaluate import float_twin, quantizes_activations
from rcsweep.metrics import efficiency
from rcsweep.pipeline import Progress, continue_trial, load_trial_data, pretrain, save_trial

BASE = dict(dataset="digits", pretrain_epochs=4, train_size=400, test_size=60, batch_size=32, eval_steps=3,
            eval_restarts=1, attack_steps=2)
FT = dict(finetune="clean", finetune_epochs=1)
METHODS = {
    "none": {},
    "prune": dict(compression="prune", sparsity=0.6, **FT),
    "prune-layer": dict(compression="prune", sparsity=0.6, prune_scope="layer", **FT),
    "prune_structured": dict(compression="prune_structured", sparsity=0.5, **FT),
    "quant-ptq": dict(compression="quant", weight_bits=4, act_bits=8, **FT),
    "quant-qat": dict(compression="quant", weight_bits=4, act_bits=8, quant_mode="qat", finetune="adversarial",
                      finetune_epochs=1),
    "prune_quant-qat": dict(compression="prune_quant", sparsity=0.5, weight_bits=4, act_bits=4, quant_mode="qat", **FT),
    "prune_structured_quant-w8a8": dict(compression="prune_structured_quant", sparsity=0.5, weight_bits=8, act_bits=8,
                                        **FT),
}
EFFICIENCY = ("params", "params_nonzero", "sparsity_measured", "channels_removed", "model_bits", "dense_model_bits",
              "weight_bits_measured", "macs", "macs_nonzero", "bops")
SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def pretrained():
    cfg = TrialConfig(**BASE)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    return data, model


@pytest.fixture(scope="module", params=sorted(METHODS), ids=sorted(METHODS))
def trial(request, pretrained, tmp_path_factory):
    """(cfg, evaluated in-memory model, record, loaded model, data, folder): the trial run as
    ``run_trial`` runs it (compress -> fine-tune -> evaluate, then save), and its saved model loaded."""
    data, dense = pretrained
    cfg = TrialConfig(**BASE, **METHODS[request.param])
    folder = tmp_path_factory.mktemp(request.param)
    model, comp, record = continue_trial(copy.deepcopy(dense), cfg, data, "cpu", Progress())
    save_trial(folder, model, cfg, comp, record)
    return cfg, model.eval(), record, load_model(folder), data, folder


def _layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def test_loaded_model_is_plain(trial):
    cfg, model, record, loaded, data, _ = trial
    names = [n for n, _ in loaded.named_parameters()] + [n for n, _ in loaded.named_buffers()]
    assert not [n for n in names if n.endswith(("weight_orig", "weight_mask"))]
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in loaded.modules())
    assert is_frozen(loaded) and not loaded.training


def test_parameters_read_directly_are_the_evaluated_weights(trial):
    cfg, model, record, loaded, data, _ = trial
    evaluated, got = dict(_layers(model)), dict(_layers(loaded))
    assert evaluated.keys() == got.keys()
    for n, m in got.items():
        w = effective_weight(evaluated[n])
        assert torch.equal(m.weight, w), n  # masked zeros and quantized values, without a forward pass
        assert torch.equal(evaluated[n].weight, w), n  # the in-memory model's .weight is not stale either
        if hasattr(evaluated[n], "weight_mask"):
            assert (m.weight[evaluated[n].weight_mask == 0] == 0).all()
        if getattr(m, "weight_quant", None) is not None and m.weight_quant.bits < 32:
            codes = m.weight_quant.codes(m.weight)
            assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= m.weight_quant.qmax


def test_outputs_equal_the_evaluated_model(trial):
    cfg, model, record, loaded, data, _ = trial
    x = data.test[0]
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_train_mode_calls_move_no_state(trial):
    cfg, model, record, loaded, data, _ = trial
    net = copy.deepcopy(loaded)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    for xb in data.train[0][:96].split(32):
        net(xb * 3.0)  # out-of-range inputs: an unfrozen activation range would widen at once
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # digits_cnn: no BatchNorm
    assert all(not q.tracking and not q.calibrate_next for q in net.modules() if isinstance(q, ActFakeQuant))
    with torch.no_grad():
        assert torch.equal(net.eval()(data.test[0]), model(data.test[0]))


def test_efficiency_metrics_are_the_recorded_ones(trial):
    cfg, model, record, loaded, data, _ = trial
    m = record["metrics"]
    eff = efficiency(loaded, cfg, SHAPE, m["dense_model_bits"] // 32, latency=False)
    assert {k: eff[k] for k in EFFICIENCY} == {k: m[k] for k in EFFICIENCY}


def test_evaluation_sees_the_quantizers_and_the_float_twin_matches(trial):
    cfg, model, record, loaded, data, _ = trial
    assert quantizes_activations(loaded) == quantizes_activations(model) == includes(cfg.compression, QuantParams)
    x = data.test[0]
    twin_loaded, twin_model = float_twin(loaded), float_twin(model)
    if twin_model is None:
        assert twin_loaded is None
        return
    with torch.no_grad():
        assert torch.equal(twin_loaded(x), twin_model(x))
    assert "transferred from the float twin" in record["evaluation"]["attack"]
    if has_int8(model):  # the real integer model built from either is the same
        calib = data.val[0]
        with torch.no_grad():
            assert torch.equal(to_int8(loaded, calib)(x), to_int8(model, calib)(x))


def _strip_new_keys(info):
    """A compression ``info`` as written before targets were checked (no target/achieved/tolerance...)."""
    if isinstance(info, dict):
        return {k: _strip_new_keys(v) for k, v in info.items()
                if k not in ("achieved", "tolerance", "max_sparsity") and not (k == "target" and isinstance(v, dict))}
    return info


def test_files_without_the_new_info_keys_still_load(trial):
    cfg, model, record, loaded, data, folder = trial
    meta = json.loads((folder / "model.json").read_text())
    meta["compression"] = _strip_new_keys(meta["compression"])
    (folder / "model.json").write_text(json.dumps(meta))
    old = load_model(folder)
    with torch.no_grad():
        assert torch.equal(old(data.test[0]), model(data.test[0]))


def test_run_trial_then_load_model(tmp_path):
    """The public path: ``run_trial(cfg, out_dir)`` then ``load_model(out_dir)``."""
    cfg = TrialConfig(**BASE, **METHODS["prune_quant-qat"])
    record = run_trial(cfg, tmp_path, device="cpu")
    loaded = load_model(tmp_path)
    assert is_frozen(loaded)
    eff = efficiency(loaded, cfg, SHAPE, record["metrics"]["dense_model_bits"] // 32, latency=False)
    assert {k: eff[k] for k in EFFICIENCY} == {k: record["metrics"][k] for k in EFFICIENCY}
