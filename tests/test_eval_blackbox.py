"""The black-box Square check of activation-quantized models and the evaluation-budget floor.

The fault: an adversarially pretrained digits model at w4a2, evaluated with ``eval_steps: 5`` and one
restart, reported a robust accuracy well above what APGD-50 x 2 plus Square find, and every
masking check passed. Now such a model also faces Square on the check subset (its fooled examples
lower ``robust_acc``; a large gap fails the ``black_box`` check), the weak budget is reported in
``weak_eval``, ``rcsweep validate`` warns about it and the report counts such trials."""
import functools
import json

import pytest
import torch
import yaml
from masked_models import RoundedInput
from torch import nn

from rcsweep.attacks import L2Threat, LinfThreat, Square
from rcsweep.config import TrialConfig
from rcsweep.evaluate import (CHECK_TOLERANCE, SQUARE_EXAMPLES, SQUARE_QUERIES, black_box_check, describe_attack,
                              eval_budget_warning, evaluate, quantizes_activations)

WEAK = "eval_steps 5 < 20, eval_restarts 1 < 2: below the evaluation floor, robust accuracy may be overstated"



@functools.lru_cache(maxsize=1)
def _w4a2():
    """(data, model): the fault's setting (sweeps/quickstart.yaml's fixed values, adversarial
    pretraining at eps 0.1, PTQ to 4-bit weights and 2-bit activations, no fine-tuning)."""
    from rcsweep.pipeline import compress, load_trial_data, pretrain, seed_everything

    cfg = TrialConfig(dataset="digits", batch_size=32, pretrain_epochs=10, attack_steps=5, pretrain="adversarial",
                      eps_eval=0.1, compression="quant", weight_bits=4, act_bits=2, seed=0)
    seed_everything(0)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data, "cpu")
    compress(model, cfg, data, "cpu")
    return data, model.eval()


def _small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Dropout(0.2))


@pytest.mark.parametrize("threat", [LinfThreat(0.1), L2Threat(0.5)], ids=["linf", "l2"])
def test_square_stays_in_the_ball_is_seeded_and_leaves_torch_rng_alone(threat):
    model = _small_model().train()
    torch.manual_seed(1)
    x = torch.rand(64, 1, 8, 8)
    with torch.no_grad():
        model.eval()
        y = model(x).argmax(1)  # every example starts correctly classified: all are attacked
        model.train()
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    x_adv = Square(threat, queries=200, seed=3)(model, x, y)
    assert torch.equal(torch.get_rng_state(), rng)  # torchattacks reseeds the global generator: restored
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    d = (x_adv - x).flatten(1)
    size = d.abs().max(1).values if threat.norm == "linf" else d.norm(dim=1)
    assert (size <= threat.eps + 1e-5).all()
    with torch.no_grad():
        model.eval()
        fooled = model(x_adv).argmax(1) != y
    assert fooled.any() and (size[~fooled] == 0).all()  # the unfooled come back unchanged
    assert torch.equal(Square(threat, queries=200, seed=3)(model, x, y), x_adv)  # seeded
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Square(threat)(model, x.flatten(1), y)


def test_eval_budget_floor():
    assert eval_budget_warning(20, 2) == eval_budget_warning(100, 5) == ""
    assert eval_budget_warning(5, 1) == WEAK
    assert eval_budget_warning(19, 2) == ("eval_steps 19 < 20: below the evaluation floor, robust accuracy may "
                                          "be overstated")
    assert eval_budget_warning(50, 1).startswith("eval_restarts 1 < 2:")


def test_weak_settings_on_a_w4a2_model_lose_what_square_finds():
    """The fault, reproduced on digits: 5 steps x 1 restart. Square runs on the survivors among the
    first 200 test images; what it fools comes off robust_acc, and weak_eval names the budget."""
    data, model = _w4a2()
    assert quantizes_activations(model)
    x, y = data.test
    kw = dict(norm="linf", eps_eval=0.1, steps=5, restarts=1)
    torch.manual_seed(0)
    white = evaluate(model, x, y, checks=False, **kw)  # what was reported before: white-box + transfer
    torch.manual_seed(0)
    res = evaluate(model, x, y, **kw)
    bb = res.checks["black_box"]
    assert set(res.checks) == {"large_eps", "more_steps", "pgd_vs_fgsm", "gradient", "black_box"}
    assert bb["queries"] == SQUARE_QUERIES and bb["examples"] == SQUARE_EXAMPLES == 200
    assert bb["attacked"] == round(bb["value"][0] * 200)  # only the white-box survivors
    assert bb["fooled"] >= 2  # measured: 5 of 170 (seed 0), 5-7 over seeds 0-2
    # the same white-box attacks ran first (same seed), then Square's finds came off: the worst case
    assert res.robust_acc == pytest.approx(white.robust_acc - bb["fooled"] / len(x))
    assert res.robust_acc < white.robust_acc
    assert bb["passed"] == (bb["value"][0] - bb["value"][1] <= CHECK_TOLERANCE)
    assert res.suspect == (not bb["passed"] or not all(c["passed"] for c in res.checks.values()))
    assert res.weak_eval == white.weak_eval == WEAK
    assert res.attack == describe_attack(5, 1, 10, True) and "Square 500 queries" in res.attack  # reevaluate's text
    assert white.attack == describe_attack(5, 1, 10, True, black_box=False)
    torch.manual_seed(0)  # seeded: the same numbers again
    again = evaluate(model, x, y, **kw)
    assert again.robust_acc == res.robust_acc and again.checks["black_box"]["seed"] == bb["seed"]
    print(f"w4a2 digits, eps 0.1, 5 x 1: white-box {white.robust_acc:.3f}, with Square {res.robust_acc:.3f}; "
          f"{bb['detail']}; {bb['seconds']:.2f} s")


def test_a_gradient_masked_quantized_model_fails_the_black_box_check():
    """Rounding the input zeroes every gradient (the twin's too): white-box attacks barely move,
    Square walks through, the check fails and the trial is suspect with Square's reason."""
    data, model = _w4a2()
    masked = RoundedInput(model)
    x, y = data.test
    torch.manual_seed(0)
    res = evaluate(masked, x[:200], y[:200], norm="linf", eps_eval=0.1, steps=20, restarts=2)
    bb = res.checks["black_box"]
    assert not bb["passed"] and bb["value"][0] - bb["value"][1] > 0.1, bb["detail"]
    assert res.suspect and "black_box: Square (500 queries) fooled" in res.suspect_reason
    assert res.robust_acc == pytest.approx(bb["value"][1])  # all 200 images are the check subset
    assert res.weak_eval == ""


def test_a_float_model_does_not_run_square(monkeypatch):
    from compress_helpers import digits_model

    def refuse(*a, **k):
        raise AssertionError("Square ran on a float model")

    monkeypatch.setattr(Square, "forward", refuse)
    data, model = digits_model()
    x, y = data.test
    res = evaluate(model, x[:100], y[:100], norm="linf", eps_eval=0.1, steps=5, restarts=1)
    assert set(res.checks) == {"large_eps", "more_steps", "pgd_vs_fgsm", "gradient"}
    assert "Square" not in res.attack and res.attack == describe_attack(5, 1, 10, False)
    assert res.weak_eval == WEAK


def test_black_box_check_counts_only_the_check_subset():
    """black_box_check on hand-made inputs: only the first n alive examples are attacked; the
    others keep their value; the returned mask is a copy."""
    _, model = _w4a2()
    x = torch.rand(10, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    alive = torch.tensor([True, False] * 5)
    out, check = black_box_check(model, x, y, alive, norm="linf", eps=0.3, n=4, queries=100, seed=0)
    assert check["attacked"] == 2 and check["examples"] == 4 and check["seed"] == 0
    assert torch.equal(out[4:], alive[4:]) and not (out & ~alive).any()
    assert torch.equal(alive, torch.tensor([True, False] * 5))  # not changed in place
    flat, skipped = black_box_check(model, x.flatten(1), y, alive, norm="linf", eps=0.3)
    assert skipped["passed"] and skipped["skipped"] and torch.equal(flat, alive)


def _validate(tmp_path, capsys, sweep):
    from rcsweep.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    assert main(["validate", str(path)]) == 0
    return capsys.readouterr().out


GRID = {"fixed": {"dataset": "digits", "pretrain_epochs": 1}, "space": {"compression": {"choice": ["none", "quant"]}},
        "search": "grid"}


def test_validate_warns_when_the_evaluation_can_go_below_the_floor(tmp_path, capsys):
    out = _validate(tmp_path, capsys, GRID)
    assert "WARNING" not in out  # defaults: 20 x 2
    out = _validate(tmp_path, capsys, {**GRID, "fixed": {**GRID["fixed"], "eval_restarts": 1}})
    assert ("  WARNING: eval_restarts 1 < 2: below the evaluation floor, robust accuracy may be overstated "
            "(eval_restarts fixed); such trials get the weak_eval flag") in out
    out = _validate(tmp_path, capsys, {**GRID, "space": {**GRID["space"], "eval_steps": {"choice": [5, 20]}}})
    assert "WARNING: eval_steps 5 < 20: below the evaluation floor" in out and "(eval_steps searched)" in out
    out = _validate(tmp_path, capsys, {**GRID, "references": [{"compression": "none", "eval_steps": 10,
                                                               "eval_restarts": 1}]})
    assert ("WARNING: eval_steps 10 < 20, eval_restarts 1 < 2: below the evaluation floor, robust accuracy may be "
            "overstated (eval_steps set by reference 0, eval_restarts set by reference 0)") in out


def test_report_counts_trials_evaluated_below_the_floor(tmp_path):
    from analysis_helpers import write_sweep

    from analysis.report import weak_eval_trials, write_report
    from rcsweep.results import load_results

    rows = [("t00", "finished", dict(clean=0.97, robust=0.05)),
            ("t01", "finished", dict(pretrain="adversarial", clean=0.93, robust=0.60, eval_steps=5)),  # params only
            ("t02", "finished", dict(compression="prune", sparsity=0.5, clean=0.95, robust=0.3)),  # record says weak
            ("t03", "finished", dict(compression="prune", sparsity=0.9, clean=0.9, robust=0.2)),  # record: at floor
            ("t04", "failed", dict(compression="prune", sparsity=0.8, eval_restarts=1))]  # not finished: not counted
    folder = write_sweep(tmp_path / "sweep", rows)
    for tid, weak in (("t02", "eval_steps 10 < 20: below the evaluation floor"), ("t03", "")):
        (folder / "trials" / tid).mkdir(parents=True)
        (folder / "trials" / tid / "record.json").write_text(json.dumps({"evaluation": {"weak_eval": weak}}))
    weak = weak_eval_trials(folder, load_results(folder)).set_index("trial_id")
    assert list(weak.index) == ["t01", "t02"]
    assert weak.loc["t01", "reason"].startswith("eval_steps 5 < 20")  # from its parameters
    assert weak.loc["t02", "reason"].startswith("eval_steps 10 < 20")  # from its record
    md = write_report(folder).read_text()
    section = md.split("## Evaluation budget")[1].split("##")[0]
    assert "2 of 4 finished trials were evaluated below the evaluation floor" in section and "| t01 |" in section
