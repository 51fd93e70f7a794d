"""The training-objective contract, run by every registered objective (a new one is picked up from
``OBJECTIVES`` without touching this file): a finite loss with gradients to the weights, declared
forward-backward passes, parameters that respect and enforce their ranges through the trial
configuration, and the configuration and FLOPs wiring."""
import dataclasses

import pytest
import torch

from objective_helpers import tiny_batch, tiny_model
from rcsweep.attacks import threat_model
from rcsweep.config import FINETUNE, PRETRAIN, TrialConfig, applicable, objective_name
from rcsweep.errors import ConfigError
from rcsweep.objectives import OBJECTIVES, Objective, ObjectiveParams
from rcsweep.sweepfile import load_sweep

NAMES = OBJECTIVES.names()


def finetune_value(name):
    return "clean" if name == "standard" else name


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_with_gradients(name):
    cls = OBJECTIVES.get(name)
    assert issubclass(cls, Objective) and issubclass(cls.Params, ObjectiveParams)
    model, (x, y) = tiny_model(), tiny_batch()
    model.train()
    loss, logits = cls().loss(model, x, y, threat_model("linf", 0.1), 3)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert logits.shape == (len(x), 3)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert model.training  # inner attacks restore train mode


@pytest.mark.parametrize("name", NAMES)
def test_declares_passes(name):
    obj = OBJECTIVES.get(name)()
    for k in (1, 5, 10):
        n = obj.forward_backward_passes(k)
        assert isinstance(n, int) and n >= 1
    assert (obj.forward_backward_passes(10) == 1) == (not obj.adversarial)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_have_defaults_ranges_units_and_reach_the_config(name):
    cls = OBJECTIVES.get(name)
    cfg = TrialConfig(pretrain=name, pretrain_epochs=1)
    assert cfg.objective("pretrain").params == cls.Params()
    ft = TrialConfig(finetune=finetune_value(name))
    assert type(ft.objective("finetune")) is cls
    for f in dataclasses.fields(cls.Params):
        lo, hi = f.metadata["range"]
        assert f.metadata["unit"] and lo <= f.default <= hi
        key = f"{name}_{f.name}"
        assert getattr(cfg, key) == f.default and getattr(ft, key) == f.default  # default filled where it applies
        assert getattr(TrialConfig(), key) is None  # None where it does not apply
        for ok in (lo, hi):
            assert getattr(TrialConfig(pretrain=name, **{key: ok}), key) == ok
        for bad in (lo - 1, hi + 1, "x"):
            with pytest.raises(ConfigError) as e:
                TrialConfig(pretrain=name, **{key: bad})
            assert e.value.field == key and "\n" not in str(e.value)
        with pytest.raises(ConfigError, match=f"{key}: only applies"):
            TrialConfig(pretrain="standard", finetune="none", **{key: f.default})
        assert applicable(key, {"finetune": finetune_value(name)}) and not applicable(key, {})


@pytest.mark.parametrize("name", NAMES)
def test_named_in_the_configuration_and_sweep_files(name):
    assert name in PRETRAIN and objective_name(finetune_value(name)) == name and finetune_value(name) in FINETUNE
    adversarial = OBJECTIVES.get(name).adversarial
    cfg = TrialConfig(pretrain=name, finetune=finetune_value(name), eps_eval=0.2)
    assert (cfg.eps_pretrain == 0.2) == adversarial and (cfg.eps_finetune == 0.2) == adversarial
    params = {f"{name}_{f.name}": f.default for f in dataclasses.fields(OBJECTIVES.get(name).Params)}
    spec = load_sweep({"name": "t", "fixed": {"finetune": finetune_value(name), **params}, "search": "grid",
                       "space": {"compression": {"choice": ["none", "prune"]}}})
    assert spec.trial_config().finetune == finetune_value(name)
    for key in params:  # a parameter of an objective the sweep never runs is refused with its name
        with pytest.raises(ConfigError, match=f"fixed.{key}"):
            load_sweep({"name": "t", "fixed": {key: params[key]}, "search": "grid",
                        "space": {"compression": {"choice": ["none", "prune"]}}})


@pytest.mark.parametrize("name", NAMES)
def test_training_flops_follow_the_declared_passes(name):
    from rcsweep.pipeline import stage_flops

    cfg = TrialConfig(pretrain=name, finetune=finetune_value(name), attack_steps=7, pretrain_epochs=2,
                      finetune_epochs=1)
    passes = OBJECTIVES.get(name)().forward_backward_passes(7)
    flops = stage_flops(cfg, 1000, 500, 10)
    assert flops["flops_pretrain"] == 6 * 1000 * 10 * 2 * passes
    assert flops["flops_finetune"] == 6 * 500 * 10 * 1 * passes
