"""MART (Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified
Examples", ICLR 2020): boosted cross-entropy on adversarial examples plus a KL term weighted by how
badly the clean example is classified."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Objective, ObjectiveParams, param
from .trades import kl_rows


@dataclass(frozen=True)
class MARTParams(ObjectiveParams):
    """``beta`` (default 6.0, the paper's setting; in [0, 100]): weight of the misclassification-aware
    KL term. Trial parameter ``mart_beta``."""
    beta: float = param(6.0, 0.0, 100.0, "weight of the KL term, dimensionless")


def mart_loss(logits_clean, logits_adv, y, beta: float):
    """The MART loss of a batch, as in the authors' code: ``BCE(p_adv, y) + beta * mean_i
    KL(p_clean_i || p_adv_i) * (1 - p_clean_i[y_i])`` where ``BCE = CE(p_adv, y) - log(1 - max_{k != y}
    p_adv_k)`` (the boosted cross-entropy). Shape: logits (N, K), ``y`` (N,); returns a scalar."""
    import torch
    import torch.nn.functional as F

    p_adv = F.softmax(logits_adv, dim=1)
    top2 = p_adv.argsort(dim=1)[:, -2:]
    runner_up = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])  # most likely wrong class
    boosted = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), runner_up)
    p_clean = F.softmax(logits_clean, dim=1)
    p_true = p_clean.gather(1, y[:, None]).squeeze(1)
    kl = kl_rows(torch.log(p_adv + 1e-12), p_clean)
    return boosted + beta * (kl * (1.0000001 - p_true)).mean()


class MART(Objective):
    """MART, Wang et al. 2020: :func:`mart_loss` on ``x_adv`` from ``attack_steps``-step PGD on the
    cross-entropy (rcsweep's PGD, as PGD-AT: uniform random start, step ``2.5 * eps / steps``, eval
    mode; the authors start from 0.001 * N(0, 1)). Parameters: :class:`MARTParams` (``beta=6.0``).
    Passes per example: ``attack_steps`` plus 2 (clean and adversarial forward-backward).
    Configuration name: ``mart``. Train accuracy counts the adversarial logits.
    """

    name = "mart"
    Params = MARTParams

    def forward_backward_passes(self, attack_steps: int) -> int:
        return attack_steps + 2

    def loss(self, model, x, y, threat, attack_steps: int):
        from ..attacks import PGD

        x_adv = PGD(threat, steps=attack_steps)(model, x, y)
        logits_adv = model(x_adv)
        return mart_loss(model(x), logits_adv, y, self.params.beta), logits_adv
