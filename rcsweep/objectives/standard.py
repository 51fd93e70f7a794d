"""Standard (clean) training: cross-entropy on the unperturbed batch."""
from __future__ import annotations

from .base import Objective


class Standard(Objective):
    """Clean empirical risk minimisation: ``CE(f(x), y)``. No parameters; 1 forward-backward pass
    per example. The configuration spells it ``pretrain: standard`` and ``finetune: clean``."""

    name = "standard"
    adversarial = False

    def forward_backward_passes(self, attack_steps: int) -> int:
        return 1

    def loss(self, model, x, y, threat=None, attack_steps: int = 0):
        import torch.nn.functional as F

        logits = model(x)
        return F.cross_entropy(logits, y), logits
