"""TRADES (Zhang et al. 2019): beta = 0 is clean training; the loss matches a hand computation;
its inner attack stays in the epsilon ball and raises the KL term."""
import math

import pytest
import torch
import torch.nn.functional as F

from objective_helpers import tiny_batch, tiny_model
from rcsweep.attacks import threat_model
from rcsweep.objectives import Standard
from rcsweep.objectives.trades import TRADES, TRADESParams


def test_beta_zero_is_clean_cross_entropy():
    model, (x, y) = tiny_model(), tiny_batch()
    trades, _ = TRADES(TRADESParams(beta=0.0)).loss(model, x, y, threat_model("linf", 0.1), 3)
    clean, _ = Standard().loss(model, x, y)
    assert trades.item() == pytest.approx(clean.item(), abs=1e-7)


def test_loss_matches_a_hand_computation(monkeypatch):
    model, (x, y) = tiny_model(), tiny_batch()
    x_adv = (x + 0.05).clamp(0, 1)
    monkeypatch.setattr(TRADES, "attack", staticmethod(lambda *a: x_adv))
    loss, _ = TRADES(TRADESParams(beta=2.5)).loss(model, x, y, threat_model("linf", 0.1), 3)
    with torch.no_grad():
        pc, pa = F.softmax(model(x), 1).tolist(), F.softmax(model(x_adv), 1).tolist()
    n = len(y)
    ce = -sum(math.log(pc[i][y[i]]) for i in range(n)) / n
    kl = sum(pc[i][k] * math.log(pc[i][k] / pa[i][k]) for i in range(n) for k in range(3)) / n  # KL(f(x) || f(x_adv))
    assert loss.item() == pytest.approx(ce + 2.5 * kl, rel=1e-5)


def test_inner_attack_stays_in_the_ball_and_raises_the_kl():
    model, (x, y) = tiny_model(), tiny_batch()
    threat = threat_model("linf", 0.1)
    torch.manual_seed(0)
    x_adv = TRADES.attack(model, x, threat, 5)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        p = F.softmax(model(x), 1)
        kl = lambda z: F.kl_div(F.log_softmax(model(z), 1), p, reduction="sum").item()  # noqa: E731
        assert kl(x_adv) > 10 * kl((x + 0.001 * torch.randn_like(x)).clamp(0, 1))


def test_passes():
    assert TRADES().forward_backward_passes(10) == 12
