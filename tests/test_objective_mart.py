"""MART (Wang et al. 2020): the loss matches a hand computation of the boosted cross-entropy and the
misclassification-weighted KL; beta scales only the KL term."""
import math

import pytest
import torch

from objective_helpers import tiny_batch, tiny_model
from rcsweep.objectives.mart import MART, MARTParams, mart_loss


def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def test_loss_matches_a_hand_computation():
    lc = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    la = torch.tensor([[0.5, 1.5, -0.5], [1.0, -1.0, 0.0]])
    y = torch.tensor([0, 2])
    beta = 3.0
    total = 0.0
    for i in range(2):
        pc, pa = _softmax(lc[i].tolist()), _softmax(la[i].tolist())
        t = int(y[i])
        runner_up = max((k for k in range(3) if k != t), key=lambda k: pa[k])
        bce = -math.log(pa[t]) - math.log(1.0001 - pa[runner_up] + 1e-12)
        kl = sum(pc[k] * math.log(pc[k] / (pa[k] + 1e-12)) for k in range(3))
        total += bce + beta * kl * (1.0000001 - pc[t])
    assert mart_loss(lc, la, y, beta).item() == pytest.approx(total / 2, rel=1e-5)


def test_beta_weights_only_the_kl_term():
    lc, la, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    l0, l1, l2 = (mart_loss(lc, la, y, b).item() for b in (0.0, 1.0, 2.0))
    assert l2 - l1 == pytest.approx(l1 - l0, rel=1e-5) and l1 > l0


def test_objective_uses_mart_loss_on_its_adversarial_examples():
    from rcsweep.attacks import threat_model

    model, (x, y) = tiny_model(), tiny_batch()
    torch.manual_seed(1)
    loss, logits_adv = MART(MARTParams(beta=6.0)).loss(model, x, y, threat_model("linf", 0.1), 3)
    assert loss.item() == pytest.approx(mart_loss(model(x), logits_adv, y, 6.0).item(), rel=1e-6)
    assert MART().forward_backward_passes(10) == 12
