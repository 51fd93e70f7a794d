from __future__ import annotations

from .base import Attack, input_grad
from .threat import ThreatModel


class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow et al., 2015): one step of the full epsilon.

    Arguments: ``threat`` (the norm and epsilon; for L2 the step follows the normalised gradient),
    ``loss='ce'``. Example: ``FGSM(LinfThreat(0.1))(model, x, y)``.
    """

    name = "fgsm"

    def __init__(self, threat: ThreatModel, loss: str = "ce"):
        super().__init__(threat)
        self.loss = loss

    def forward(self, model, x, y):
        _, grad = input_grad(model, x, y, self.loss)
        return self.threat.project(self.threat.step(x, grad, self.threat.eps), x)
