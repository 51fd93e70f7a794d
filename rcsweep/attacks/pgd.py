from __future__ import annotations

import torch

from .base import Attack, input_grad
from .threat import ThreatModel


class PGD(Attack):
    """Projected Gradient Descent (Madry et al., 2018) under any threat model.

    Arguments: ``threat`` (norm and epsilon in pixel units), ``steps=10``, ``step_size=None``
    (default ``2.5 * eps / steps``), ``restarts=1``, ``random_start=True``, ``loss='ce'``
    (``'cw'`` or ``'dlr'`` for the margin losses that cross-entropy PGD can overstate robustness
    without), ``early_stop=False``.

    With ``early_stop=True`` (evaluation) an example leaves the attack as soon as it is
    misclassified, and later restarts attack only the survivors: the worst case per example is kept
    at no extra cost, with one forward per step on the examples still standing. Without it
    (training) every example takes all steps and the last iterate is returned.

    Example: ``PGD(LinfThreat(8/255), steps=20, restarts=2, early_stop=True)(model, x, y)``.
    """

    name = "pgd"

    def __init__(self, threat: ThreatModel, steps: int = 10, step_size: float | None = None,
                 restarts: int = 1, random_start: bool = True, loss: str = "ce", early_stop: bool = False):
        super().__init__(threat)
        if steps < 1 or restarts < 1:
            raise ValueError("steps and restarts must be >= 1")
        self.steps, self.restarts, self.loss = steps, restarts, loss
        self.step_size = step_size if step_size is not None else 2.5 * threat.eps / steps
        self.random_start, self.early_stop = random_start, early_stop

    def forward(self, model, x, y):
        if self.threat.eps == 0:
            return x.clone()
        if not self.early_stop:
            x_adv = x
            for _ in range(self.restarts):
                x_adv = self._run(model, x, y)
            return x_adv
        best = x.clone()
        active = torch.arange(len(x), device=x.device)
        for _ in range(self.restarts):
            if len(active) == 0:
                break
            x_a, fooled = self._run(model, x[active], y[active], stop=True)
            best[active] = x_a  # survivors keep their last iterate, fooled ones their first success
            active = active[~fooled]
        return best

    def _run(self, model, x, y, stop: bool = False):
        t = self.threat
        x_adv = t.random_init(x) if self.random_start else x.clone()
        if not stop:
            for _ in range(self.steps):
                _, grad = input_grad(model, x_adv, y, self.loss)
                x_adv = t.project(t.step(x_adv, grad, self.step_size), x)
            return x_adv
        out = x_adv.clone()
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        idx = torch.arange(len(x), device=x.device)  # examples still being attacked
        for step in range(self.steps + 1):
            if step == self.steps:  # check the last iterate: one forward, no backward
                with torch.no_grad():
                    logits = model(x_adv)
            else:
                logits, grad = input_grad(model, x_adv, y[idx], self.loss)
            hit = logits.argmax(1) != y[idx]
            out[idx] = x_adv
            fooled[idx[hit]] = True
            keep = ~hit
            if step == self.steps or not keep.any():
                break
            idx, x_adv, grad = idx[keep], x_adv[keep], grad[keep]
            x_adv = t.project(t.step(x_adv, grad, self.step_size), x[idx])
        return out, fooled
