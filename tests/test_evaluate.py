"""Evaluation: robustness curve, gradient-masking checks, and agreement with an independent attack."""
import json

import pytest
import torch
from masked_models import RoundedInput

from rcsweep import load_dataset, load_model
from rcsweep.attacks import APGD
from rcsweep.evaluate import evaluate



def test_curve_is_monotone_and_includes_eps_eval(digits_trials):
    model = load_model(digits_trials["standard"])
    x, y = load_dataset("digits", "test", test_size=120)
    res = evaluate(model, x, y, norm="linf", eps_eval=0.1, eps_curve=(0.05, 0.1, 0.3), steps=10, restarts=1)
    curve = [res.robust_acc_curve[e] for e in (0.05, 0.1, 0.3)]
    assert curve == sorted(curve, reverse=True)
    assert res.robust_acc == curve[1] <= res.clean_acc
    assert not res.suspect, res.suspect_reason
    assert set(res.checks) == {"large_eps", "more_steps", "pgd_vs_fgsm", "gradient"}


def test_masked_model_is_flagged_suspect(digits_trials):
    model = RoundedInput(load_model(digits_trials["standard"]))
    x, y = load_dataset("digits", "test", test_size=100)
    res = evaluate(model, x, y, norm="linf", eps_eval=0.1, steps=10, restarts=1)
    assert res.suspect
    assert not res.checks["gradient"]["passed"]
    assert "gradient" in res.suspect_reason


def test_reported_robust_accuracy_agrees_with_independent_attack(digits_trials):
    """rcsweep's robust accuracy is at most 1 point above torchattacks' stronger PGD (more steps and
    restarts) on the same model loaded with load_model and the same load_dataset split."""
    torchattacks = pytest.importorskip("torchattacks")
    folder = digits_trials["adversarial"]
    record = json.loads((folder / "record.json").read_text())
    ours = record["metrics"]["robust_acc"]
    model = load_model(folder)
    x, y = load_dataset("digits", "test", test_size=record["params"]["test_size"])
    eps = record["params"]["eps_eval"]
    torch.manual_seed(1)
    alive = torch.ones(len(x), dtype=torch.bool)
    for loss_attack in (torchattacks.PGD(model, eps=eps, alpha=eps / 10, steps=50, random_start=True),
                        torchattacks.PGD(model, eps=eps, alpha=eps / 10, steps=50, random_start=True),
                        torchattacks.APGDT(model, norm="Linf", eps=eps, steps=50, n_classes=10)
                        if hasattr(torchattacks, "APGDT") else None):
        if loss_attack is None:
            continue
        x_adv = loss_attack(x, y)
        with torch.no_grad():
            alive &= model(x_adv).argmax(1) == y
    independent = alive.float().mean().item()
    assert ours <= independent + 0.01, (ours, independent)


def test_quantized_model_is_also_attacked_from_its_float_twin():
    """Rounding activations masks gradients: the evaluation of a model with quantized activations
    adds APGD-CE crafted on its float twin, so its robust accuracy is at most the white-box one."""
    from compress_helpers import config, digits_model

    from rcsweep.evaluate import _eval_attacks, float_twin, robust_correct
    from rcsweep.pipeline import compress

    data, model = digits_model()
    assert float_twin(model) is None  # a float model: white-box attacks only
    compress(model, config(compression="quant", weight_bits=4, act_bits=4), data, "cpu")
    twin = float_twin(model)
    assert twin is not None and not any("Quant" in type(m).__name__ for m in twin.modules())
    x, y = data.test
    torch.manual_seed(0)
    res = evaluate(model, x, y, norm="linf", eps_eval=0.1, steps=10, restarts=1, checks=False)
    torch.manual_seed(0)
    white = robust_correct(model, x, y, _eval_attacks("linf", 0.1, 10, 1, 10), "cpu").float().mean().item()
    assert "transferred from the float twin" in res.attack
    assert res.robust_acc < white  # measured: 0.475 white-box, 0.433 with the transfer (360 images)
    print(f"w4a4 digits at eps 0.1: white-box {white:.3f}, with the transfer {res.robust_acc:.3f}")


def test_eval_targets_runs_apgd_t_instead_of_apgd_dlr(digits_trials):
    """``targets=k``: APGD-T on k classes replaces APGD-DLR (per example it is the worst case of
    APGD-CE and every target, so never weaker than APGD-CE alone); below 4 classes there is no
    targeted DLR and the default stays."""
    from rcsweep.evaluate import describe_attack

    model = load_model(digits_trials["adversarial"])
    x, y = load_dataset("digits", "test", test_size=150)
    kw = dict(norm="linf", eps_eval=0.15, steps=10, restarts=1, checks=False)
    torch.manual_seed(0)
    ce_only = evaluate(model, x, y, attack=APGD, **kw)  # APGD-CE alone
    torch.manual_seed(0)
    t9 = evaluate(model, x, y, targets=9, **kw)
    assert t9.attack == "APGD-CE 10 steps x 1 restarts + APGD-T 10 steps x 9 targets, random start"
    assert t9.robust_acc <= ce_only.robust_acc and t9.clean_acc == ce_only.clean_acc
    assert 0.2 < t9.robust_acc < t9.clean_acc  # a robust model, still attackable at this eps
    assert describe_attack(10, 1, 10, False, targets=20).endswith("x 9 targets, random start")  # at most C - 1
    assert describe_attack(10, 1, 3, False, targets=2) == "APGD-CE 10 steps x 1 restarts + APGD-DLR 10 steps, random start"
    assert describe_attack(10, 1, 2, True, targets=1).startswith("APGD-CE 10 steps x 1 restarts + APGD-CW")
