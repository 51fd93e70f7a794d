"""A compressor never silently misses its target.

Reported: structured pruning of digits_cnn at sparsity 0.9 / 0.95 / 0.97 / 0.99 removed 0.91 / 0.85 /
0.44 / 0.0 of the channels (Torch-Pruning skipped every layer that would have been left empty) and
the trial recorded ``sparsity: 0.99`` as if it had happened. Now the largest reachable sparsity is
known per model, a sweep asking for more is refused by ``rcsweep validate`` / ``run`` (exit 2, one
line naming the field), a trial asking for more fails with a one-line error, and each compressor
detects a miss of its own (simulated here by breaking the library call it relies on).
"""
from __future__ import annotations

import pytest
import torch
import yaml

from rcsweep.cli import main
from rcsweep.compress import TargetNotReached, compress_, max_structured_sparsity
from rcsweep.config import TrialConfig
from rcsweep.errors import ConfigError
from rcsweep.metrics import efficiency
from rcsweep.models import build_model
from rcsweep.sweepfile import load_sweep

SHAPE = (1, 8, 8)


def _compress(**kw):
    torch.manual_seed(0)
    model = build_model("digits_cnn", "digits")
    cfg = TrialConfig(dataset="digits", **kw)
    comp = compress_(model, cfg, (torch.rand(16, *SHAPE), torch.randint(0, 10, (16,))))
    return model, comp, cfg


def test_reported_structured_sparsities_reach_their_target_or_fail_clearly():
    limit = max_structured_sparsity("digits_cnn", "digits")
    assert limit == 0.9375
    model, comp, cfg = _compress(compression="prune_structured", sparsity=0.9)
    assert efficiency(model, cfg, SHAPE, 0, latency=False)["channels_removed"] == pytest.approx(0.9, abs=0.01)
    model, comp, cfg = _compress(compression="prune_structured", sparsity=limit)
    eff = efficiency(model, cfg, SHAPE, 0, latency=False)
    assert eff["channels_removed"] == comp.info["achieved"] == 0.9375  # 15 of 16, 30 of 32, 30 of 32, 60 of 64
    assert comp.info["target"] == 0.9375 and comp.info["max_sparsity"] == 0.9375
    for s in (0.95, 0.97, 0.99):
        with pytest.raises(TargetNotReached) as e:
            _compress(compression="prune_structured", sparsity=s)
        msg = str(e.value)
        assert "\n" not in msg and "digits_cnn" in msg and f"sparsity {s:g} is beyond" in msg and "(0.9375" in msg


def test_a_trial_config_can_be_checked_before_training():
    from rcsweep.compress.structured import check_structured_target

    check_structured_target(TrialConfig(compression="prune_structured", sparsity=0.9375))
    check_structured_target(TrialConfig(compression="prune", sparsity=0.99))
    with pytest.raises(TargetNotReached, match=r"0\.96 is beyond .* model digits_cnn at width 0\.5 reaches \(0\.875"):
        check_structured_target(TrialConfig(compression="prune_structured_quant", sparsity=0.96, width=0.5))


def test_cli_trial_beyond_the_limit_is_one_line_exit_2(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"fixed": {"dataset": "digits", "pretrain_epochs": 0},
                                     "space": {"seed": {"choice": [0]}}}))
    rc = main(["trial", str(sweep), "--set", "compression=prune_structured", "sparsity=0.99",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "0.99" in err and "0.9375" in err
    assert not (tmp_path / "o" / "record.json").exists()


# -- the sweep file ------------------------------------------------------------------------------
def _sweep(fixed=None, space=None, references=None):
    data = {"fixed": {"dataset": "digits", **(fixed or {})}, "space": space or {"seed": {"choice": [0, 1]}}}
    if references:
        data["references"] = references
    return load_sweep(data, "s")


STRUCT = {"compression": "prune_structured"}


@pytest.mark.parametrize("fixed, space, field, needle", [
    (STRUCT, {"sparsity": {"uniform": [0.5, 0.99]}}, "space.sparsity", "high 0.99 is beyond"),
    (STRUCT, {"sparsity": {"choice": [0.5, 0.95]}}, "space.sparsity", "choice 0.95 is beyond"),
    ({**STRUCT, "sparsity": 0.99}, None, "fixed.sparsity", "0.99 is beyond"),
    ({}, {"compression": {"choice": ["prune", "prune_structured_quant"]}, "sparsity": {"uniform": [0.1, 0.97]}},
     "space.sparsity", "high 0.97"),
    (STRUCT, {"model": {"choice": ["digits_cnn", "fmnist_net"]}, "sparsity": {"uniform": [0.1, 0.95]}},
     "space.sparsity", "model digits_cnn reaches (0.9375"),
    (STRUCT, {"width": {"uniform": [0.5, 1.0]}, "sparsity": {"uniform": [0.1, 0.9]}},
     "space.sparsity", "model digits_cnn at width 0.5 reaches (0.875"),
    ({**STRUCT, "width": 0.03}, None, "sparsity", "the default 0.5 is beyond"),
])
def test_sweep_beyond_the_largest_structured_sparsity_is_refused(fixed, space, field, needle):
    with pytest.raises(ConfigError) as e:
        _sweep(fixed, space)
    assert e.value.field == field and needle in str(e.value) and "\n" not in str(e.value)


def test_reference_beyond_the_limit_is_refused():
    with pytest.raises(ConfigError) as e:
        _sweep(references=[{**STRUCT, "sparsity": 0.96}])
    assert e.value.field == "references[0].sparsity" and "0.9375" in str(e.value)


def test_sweeps_within_reach_are_accepted():
    _sweep(STRUCT, {"sparsity": {"uniform": [0.1, 0.9375]}})
    _sweep({"compression": "prune"}, {"sparsity": {"uniform": [0.1, 0.99]}})  # unstructured reaches 0.99
    _sweep({}, {"compression": {"choice": ["none", "quant"]}})
    _sweep({"dataset": "cifar10", **STRUCT}, {"sparsity": {"choice": [0.5, 0.98]}})  # resnet18: 63/64


def test_cli_validate_refuses_with_exit_2_and_one_line(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"fixed": {"dataset": "digits", **STRUCT},
                                     "space": {"sparsity": {"uniform": [0.5, 0.99]}}}))
    assert main(["validate", str(sweep)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert ("space.sparsity: high 0.99 is beyond the largest structured sparsity model digits_cnn reaches (0.9375"
            in err)


# -- each compressor notices a miss of its own -----------------------------------------------------
def test_structured_notices_channels_left_in_place(monkeypatch):
    import rcsweep.compress.structured as structured

    monkeypatch.setattr(structured, "_prune_groups", lambda *a, **k: None)  # the old silent skip, everywhere
    with pytest.raises(TargetNotReached, match=r"layer net\.0 kept 16 of 16 output channels, the target removes 8"):
        _compress(compression="prune_structured", sparsity=0.5)


def test_unstructured_notices_a_wrong_mask(monkeypatch):
    from torch.nn.utils import prune

    real = prune.global_unstructured
    monkeypatch.setattr(prune, "global_unstructured", lambda p, m, amount: real(p, m, amount=amount / 2))
    with pytest.raises(TargetNotReached, match=r"0\.2500 of its prunable weights masked, asked for sparsity 0\.5"):
        _compress(compression="prune", sparsity=0.5)


def test_quant_notices_weights_that_need_other_bits(monkeypatch):
    from rcsweep.compress.fake_quant import WeightFakeQuant

    def too_wide(self, w):  # a grid whose top code is 3: the weights use 3 bits of a 4-bit target
        self.scale.copy_(w.detach().flatten(1).abs().amax(1) / 3)

    monkeypatch.setattr(WeightFakeQuant, "calibrate", too_wide)
    with pytest.raises(TargetNotReached, match="asked for w4a8, but its weight codes need 3 bits"):
        _compress(compression="quant", weight_bits=4, act_bits=8)


def test_quant_check_after_finetuning_updates_info():
    model, comp, cfg = _compress(compression="prune_structured_quant", sparsity=0.5, weight_bits=4, act_bits=8,
                                 quant_mode="ptq", finetune="clean", finetune_epochs=1)
    assert comp.info["quant"]["achieved"] == {"weight_bits": 4, "act_bits": 8}
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "weight_quant"):
                m.weight.mul_(0.4)  # weights shrank in fine-tuning: the top codes are no longer used
    comp.finalize()
    assert comp.info["quant"]["achieved"]["weight_bits"] == 3 and comp.info["quant"]["target"]["weight_bits"] == 4
    assert comp.info["structured"]["achieved"] == comp.info["structured"]["target"] == 0.5
