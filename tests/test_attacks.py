"""Attack contract: every attack stays in its threat model and [0, 1], restores the model's mode and
never changes weights; PGD is stronger than FGSM; early stopping keeps the worst case; APGD-T
(targeted DLR) is in the contract too and attacks the classes it should."""
import pytest
import torch
from torch import nn

from rcsweep.attacks import ATTACKS, FGSM, PGD, L2Threat, LinfThreat, make_attack, threat_model
from rcsweep.errors import UserError


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Dropout(0.2))


CASES = [(name, norm, eps, {}) for name in ATTACKS.names() for norm, eps in (("linf", 0.1), ("l2", 0.5))]
CASES += [("apgd", norm, eps, {"targets": 3}) for norm, eps in (("linf", 0.1), ("l2", 0.5))]  # APGD-T


@pytest.mark.parametrize("name, norm, eps, kwargs", CASES)
def test_attack_contract(name, norm, eps, kwargs):
    model = _model().train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    x_adv = make_attack(name, norm, eps, **kwargs)(model, x, y)
    assert model.training  # mode restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    d = (x_adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert (size > 0).any()


def test_threat_projection_and_errors():
    x = torch.full((2, 1, 4, 4), 0.5)
    t = LinfThreat(0.1)
    assert torch.allclose(t.project(x + 1.0, x), torch.full_like(x, 0.6))
    l2 = L2Threat(1.0)
    far = x + torch.ones_like(x)
    assert torch.allclose((l2.project(far, x) - x).flatten(1).norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(UserError):
        threat_model("linf", 1.5)
    with pytest.raises(UserError):
        threat_model("l1", 0.1)
    with pytest.raises(UserError, match="unknown attack"):
        make_attack("deepfool", "linf", 0.1)


def test_pgd_is_stronger_than_fgsm_and_early_stop_keeps_worst_case(digits_trials):
    from rcsweep import load_dataset, load_model
    from rcsweep.evaluate import robust_correct

    model = load_model(digits_trials["standard"])
    x, y = load_dataset("digits", "test", test_size=200)
    t = LinfThreat(0.1)
    torch.manual_seed(0)
    fgsm = robust_correct(model, x, y, [FGSM(t)], "cpu").float().mean()
    pgd = robust_correct(model, x, y, [PGD(t, steps=10)], "cpu").float().mean()
    pgd_es = robust_correct(model, x, y, [PGD(t, steps=10, restarts=2, early_stop=True)], "cpu").float().mean()
    assert pgd < fgsm
    assert pgd_es <= pgd + 0.02
    # early-stopped PGD returns, for each fooled example, a point that really fools the model
    x_adv = PGD(t, steps=10, early_stop=True)(model, x, y)
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    assert fooled.float().mean() >= 1 - pgd - 0.02


def test_margin_losses():
    from rcsweep.attacks import margin_loss

    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    cw = margin_loss(logits, y, "cw")
    assert torch.allclose(cw, torch.tensor([-2.0, 2.0]))
    dlr = margin_loss(logits, y, "dlr")
    assert torch.allclose(dlr, torch.tensor([-2.0 / 3.0, 2.0 / 2.0]))
    # targeted DLR: (target logit - true logit) / (largest - mean of the 3rd and 4th largest)
    logits = torch.tensor([[4.0, 3.0, 2.0, 0.0], [1.0, 5.0, 2.0, 3.0]])
    y, target = torch.tensor([0, 0]), torch.tensor([2, 1])
    dlrt = margin_loss(logits, y, "dlr-t", target)
    assert torch.allclose(dlrt, torch.tensor([(2.0 - 4.0) / (4.0 - 1.0), (5.0 - 1.0) / (5.0 - 1.5)]))
    with pytest.raises(ValueError, match="needs target"):
        margin_loss(logits, y, "dlr-t")


def test_apgd_t_attacks_the_most_likely_other_classes_in_turn(monkeypatch):
    from rcsweep.attacks import APGD

    model = _model().eval()
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        order = model(x).sort(dim=1, descending=True).indices
    y = order[:, 0]  # correctly classified: the targets are the next classes, skipping the label
    seen = []
    attack = APGD(LinfThreat(1e-4), steps=2, targets=3)  # too small to fool anything: every target runs
    real = attack._run

    def spy(model, x_, y_, target=None):
        seen.append(target.clone())
        return real(model, x_, y_, target)

    monkeypatch.setattr(attack, "_run", spy)
    attack(model, x, y)
    assert attack.loss == "dlr-t" and len(seen) == 3
    with pytest.raises(ValueError, match="at least 4 classes"):
        APGD(LinfThreat(0.1), targets=1)(nn.Linear(64, 3), x.flatten(1), torch.zeros(6, dtype=torch.long))
    expected = [order[:, 1], order[:, 2], order[:, 3]]
    for got, want in zip(seen, expected):
        assert torch.equal(got, want)
