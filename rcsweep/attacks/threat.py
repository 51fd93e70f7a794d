"""Threat models as objects (after MadryLab robustness's attack steps): the PGD loop never knows
which norm it runs. Images live in [0, 1]; ``eps`` is in the same pixel units."""
from __future__ import annotations

import torch

from ..errors import UserError


class ThreatModel:
    norm: str = ""

    def __init__(self, eps: float):
        if eps < 0:
            raise UserError(f"epsilon must be >= 0, got {eps}")
        self.eps = float(eps)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Closest point to ``x_adv`` inside the eps-ball around ``x`` and the image box [0, 1]."""
        raise NotImplementedError

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        """One steepest-ascent step of length ``step_size`` in this norm."""
        raise NotImplementedError

    def random_init(self, x: torch.Tensor) -> torch.Tensor:
        """A uniformly random point of the ball around ``x`` (then clipped to [0, 1])."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(eps={self.eps:.6g})"


class LinfThreat(ThreatModel):
    norm = "linf"

    def __init__(self, eps: float):
        if eps > 1:
            raise UserError(f"L-inf epsilon {eps} is outside [0, 1] (pixel units of [0, 1] images)")
        super().__init__(eps)

    def project(self, x_adv, x):
        return torch.clamp(torch.min(torch.max(x_adv, x - self.eps), x + self.eps), 0.0, 1.0)

    def step(self, x_adv, grad, step_size):
        return x_adv + step_size * grad.sign()

    def random_init(self, x):
        return torch.clamp(x + torch.empty_like(x).uniform_(-self.eps, self.eps), 0.0, 1.0)


def _batch_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


class L2Threat(ThreatModel):
    norm = "l2"

    def project(self, x_adv, x):
        delta = x_adv - x
        delta = delta * torch.clamp(self.eps / _batch_norm(delta), max=1.0)
        return torch.clamp(x + delta, 0.0, 1.0)

    def step(self, x_adv, grad, step_size):
        return x_adv + step_size * grad / _batch_norm(grad)

    def random_init(self, x):
        # uniform in the ball: random direction, radius eps * U^(1/d)
        d = x[0].numel()
        direction = torch.randn_like(x)
        direction = direction / _batch_norm(direction)
        radius = self.eps * torch.rand(len(x), device=x.device).pow(1.0 / d).view(-1, *([1] * (x.dim() - 1)))
        return torch.clamp(x + direction * radius, 0.0, 1.0)


THREATS = {"linf": LinfThreat, "l2": L2Threat}


def threat_model(norm: str, eps: float) -> ThreatModel:
    if norm not in THREATS:
        raise UserError(f"unknown norm {norm!r}; use one of {', '.join(THREATS)}")
    return THREATS[norm](eps)
