"""A small attack base class (after torchattacks' ``Attack``): ``__call__`` puts the model in eval
mode, runs ``forward`` and restores the mode. Attacks take gradients with respect to the input
only (``torch.autograd.grad``), so they never touch weights or their ``.grad``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .threat import ThreatModel


class Attack:
    name = "attack"

    def __init__(self, threat: ThreatModel):
        self.threat = threat

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``: same shape, in [0, 1], within the threat model."""
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                x_adv = self.forward(model, x.detach(), y.detach())
        finally:
            model.train(was_training)
        return x_adv.detach()

    def __repr__(self):
        return f"{type(self).__name__}({self.threat})"


def margin_loss(logits: torch.Tensor, y: torch.Tensor, kind: str, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example loss to *maximise*: ``ce`` (cross-entropy), ``cw`` (max other logit minus the
    true logit), ``dlr`` (CW margin divided by the spread of the sorted logits; Croce & Hein 2020)
    or ``dlr-t`` (targeted DLR: the ``target`` logit minus the true one, divided by the largest
    logit minus the mean of the 3rd and 4th; AutoAttack's APGD-T)."""
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y[:, None]).squeeze(1)
    if kind == "dlr-t":
        if target is None:
            raise ValueError("the dlr-t loss needs target classes")
        s = logits.sort(dim=1).values
        return (logits.gather(1, target[:, None]).squeeze(1) - true) / (s[:, -1] - 0.5 * (s[:, -3] + s[:, -4]) + 1e-12)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    margin = other.max(1).values - true
    if kind == "cw":
        return margin
    if kind == "dlr":
        s = logits.sort(dim=1).values
        return margin / (s[:, -1] - s[:, -3] + 1e-12)
    raise ValueError(f"unknown loss {kind!r}; use ce, cw, dlr or dlr-t")


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str, target: torch.Tensor | None = None):
    """(logits, d sum(loss) / d x) without touching parameter gradients."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(margin_loss(logits, y, loss, target).sum(), x)
    return logits.detach(), grad
