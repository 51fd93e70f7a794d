"""PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018): cross-entropy on PGD examples."""
from __future__ import annotations

from .base import Objective


class PGDAT(Objective):
    """PGD adversarial training, Madry et al. 2018: ``CE(f(x_adv), y)`` with ``x_adv`` from
    ``attack_steps``-step PGD with a uniform random start in the epsilon ball (step
    ``2.5 * eps / steps``), run in eval mode as in the authors' code. No parameters of its own;
    ``attack_steps + 1`` forward-backward passes per example. Configuration name:
    ``adversarial`` (``pretrain: adversarial``, ``finetune: adversarial``).
    """

    name = "adversarial"

    def forward_backward_passes(self, attack_steps: int) -> int:
        return attack_steps + 1

    def loss(self, model, x, y, threat, attack_steps: int):
        import torch.nn.functional as F

        from ..attacks import PGD

        x_adv = PGD(threat, steps=attack_steps)(model, x, y)
        logits = model(x_adv)
        return F.cross_entropy(logits, y), logits
