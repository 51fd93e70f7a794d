"""Slow end-to-end checks of the study's claims on real data (run with --runslow):

- digits and FashionMNIST: a standard model pruned to 0.7 or quantized to 4 bits, then adversarially
  fine-tuned for 3 epochs, is clearly more robust than the same compressed model without
  fine-tuning, and keeps the sparsity / bit-width asked for;
- FashionMNIST: 4-bit per-channel PTQ stays within 3 points of float clean accuracy.
"""
from __future__ import annotations

import copy

import pytest

from rcsweep import TrialConfig, run_trial
from rcsweep.compress import compress_
from rcsweep.metrics import efficiency
from rcsweep.pipeline import TrialData, evaluate_model, finetune, load_trial_data, pretrain
from rcsweep.train import accuracy

pytestmark = pytest.mark.slow

DIGITS = dict(dataset="digits", batch_size=32, pretrain_epochs=15, eps_eval=0.1, eval_steps=10, eval_restarts=1)
COMPRESSIONS = {"prune-0.7": dict(compression="prune", sparsity=0.7),
                "quant-4bit": dict(compression="quant", weight_bits=4)}


def _assert_kept(metrics, comp):
    if "sparsity" in comp:
        assert metrics["sparsity_measured"] == pytest.approx(comp["sparsity"], abs=0.005)
    if "weight_bits" in comp:
        assert metrics["weight_bits_measured"] == comp["weight_bits"]


@pytest.fixture(scope="module")
def digits_pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits_pre")
    run_trial(TrialConfig(**DIGITS), folder, device="cpu")
    return folder


@pytest.mark.parametrize("name", sorted(COMPRESSIONS))
def test_digits_adversarial_finetuning_beats_no_finetuning(digits_pretrained, name):
    comp = COMPRESSIONS[name]
    none = run_trial(TrialConfig(**DIGITS, **comp), device="cpu", pretrained_path=digits_pretrained)["metrics"]
    adv = run_trial(TrialConfig(**DIGITS, **comp, finetune="adversarial", finetune_epochs=3), device="cpu",
                    pretrained_path=digits_pretrained)["metrics"]
    assert adv["robust_acc"] >= none["robust_acc"] + 0.10, (none["robust_acc"], adv["robust_acc"])
    assert not adv["suspect"], adv["suspect_reason"]
    assert adv["clean_acc"] >= 0.9
    _assert_kept(adv, comp)


FMNIST = dict(dataset="fashion_mnist", train_size=6000, batch_size=32, pretrain_epochs=4, test_size=1000,
              attack_steps=5, eps_eval=0.1, eval_steps=10, eval_restarts=1)


@pytest.fixture(scope="module")
def fmnist():
    cfg = TrialConfig(**FMNIST)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    return data, model.eval()


def test_fmnist_4bit_ptq_within_3_points_of_float(fmnist):
    data, model = fmnist
    full_test = load_trial_data(TrialConfig(**{**FMNIST, "test_size": None})).test
    float_acc = accuracy(model, *full_test, "cpu")
    assert float_acc > 0.8  # a standard model, not a half-trained one
    q = copy.deepcopy(model)
    compress_(q, TrialConfig(**FMNIST, compression="quant", weight_bits=4, act_bits=8), calib=data.val)
    assert accuracy(q, *full_test, "cpu") >= float_acc - 0.03


def test_fmnist_adversarial_finetuning_of_4bit_model(fmnist):
    data, model = fmnist
    ft_data = TrialData(data.info, (data.train[0][:1500], data.train[1][:1500]), data.val,
                        (data.test[0][:500], data.test[1][:500]))
    robust = {}
    for ft in ("none", "adversarial"):
        cfg = TrialConfig(**FMNIST, compression="quant", weight_bits=4,
                          **(dict(finetune="adversarial", finetune_epochs=3) if ft == "adversarial" else {}))
        m = copy.deepcopy(model)
        comp = compress_(m, cfg, calib=data.val)
        finetune(m, comp, cfg, ft_data, "cpu")
        robust[ft] = evaluate_model(m, cfg, ft_data, "cpu").robust_acc
        _assert_kept(efficiency(m, cfg, (1, 28, 28), sum(p.numel() for p in model.parameters()), latency=False),
                     dict(weight_bits=4))
    assert robust["adversarial"] >= robust["none"] + 0.10, robust
