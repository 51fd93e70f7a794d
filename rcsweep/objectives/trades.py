"""TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
ICML 2019): clean cross-entropy plus ``beta`` times a KL term between clean and adversarial outputs."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Objective, ObjectiveParams, param


@dataclass(frozen=True)
class TRADESParams(ObjectiveParams):
    """``beta`` (default 6.0, the paper's CIFAR-10 setting; in [0, 100]): weight of the KL term;
    0 is clean training, larger trades clean accuracy for robustness. Trial parameter ``trades_beta``."""
    beta: float = param(6.0, 0.0, 100.0, "weight of the KL term, dimensionless")


def kl_rows(log_p_adv, p_clean):
    """Per-example ``KL(p_clean || p_adv) = sum_k p_clean (log p_clean - log p_adv)``: the authors'
    ``nn.KLDivLoss(reduction='sum')(log p_adv, p_clean)`` before summing over the batch.
    Shape: (N, K) each; returns (N,)."""
    import torch.nn.functional as F

    return F.kl_div(log_p_adv, p_clean, reduction="none").sum(1)


class TRADES(Objective):
    """TRADES, Zhang et al. 2019: ``CE(f(x), y) + beta * mean_i KL(f(x_i) || f(x_adv_i))`` (softmax
    outputs; the authors' code, which the paper writes as the boundary term with f(x) and f(x')).
    ``x_adv`` maximises that KL by ``attack_steps``-step PGD (step ``2.5 * eps / steps``, as
    rcsweep's PGD-AT) from ``x + 0.001 * N(0, 1)`` noise, in eval mode, with the clean
    probabilities fixed. Parameters: :class:`TRADESParams` (``beta=6.0``). Passes per example:
    ``attack_steps`` for the attack plus 2 (clean and adversarial forward-backward).
    Configuration name: ``trades``. Train accuracy counts the clean logits.
    """

    name = "trades"
    Params = TRADESParams

    def forward_backward_passes(self, attack_steps: int) -> int:
        return attack_steps + 2

    def loss(self, model, x, y, threat, attack_steps: int):
        import torch.nn.functional as F

        x_adv = self.attack(model, x, threat, attack_steps)
        logits = model(x)
        log_p_adv = F.log_softmax(model(x_adv), dim=1)
        robust = kl_rows(log_p_adv, F.softmax(logits, dim=1)).mean()
        return F.cross_entropy(logits, y) + self.params.beta * robust, logits

    @staticmethod
    def attack(model, x, threat, steps: int):
        """PGD on ``KL(f(x) || f(x_adv))`` from a small Gaussian start (the authors' 0.001 * N(0, 1))."""
        import torch
        import torch.nn.functional as F

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                p_clean = F.softmax(model(x), dim=1)
            x_adv = threat.project(x + 0.001 * torch.randn_like(x), x)
            step = 2.5 * threat.eps / steps
            for _ in range(steps):
                x_adv = x_adv.detach().requires_grad_(True)
                with torch.enable_grad():
                    kl = kl_rows(F.log_softmax(model(x_adv), dim=1), p_clean).sum()
                    (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = threat.project(threat.step(x_adv.detach(), grad, step), x)
        finally:
            model.train(was_training)
        return x_adv.detach()
