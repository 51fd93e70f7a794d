"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020), run by torchattacks' implementation
(``torchattacks.Square``, a port of the authors' code in fra31/auto-attack, where it is
AutoAttack's fourth attack).

It uses no gradient: it only queries the model's logits, changing random squares of the
perturbation and keeping a change when the margin loss (true logit minus the best other logit)
drops. So it is blind to what masks gradients (rounded activations, flat losses between
quantization grid points) and is the standard black-box check that a white-box robust accuracy is
not an artefact of gradient masking (Carlini et al. 2019, "On Evaluating Adversarial Robustness";
Croce & Hein 2020, AutoAttack).
"""
from __future__ import annotations

import torch

from ..device import rng_kept
from .base import Attack
from .threat import ThreatModel

_NORMS = {"linf": "Linf", "l2": "L2"}


class Square(Attack):
    """Square Attack under ``threat`` (L-inf or L2, eps in pixel units of [0, 1] images).

    Arguments: ``threat``; ``queries=5000`` (model forwards per example and restart; AutoAttack's
    and torchattacks' default; torchattacks rescales the square-size schedule to the budget, and
    rcsweep's evaluation uses ``rcsweep.evaluate.SQUARE_QUERIES``); ``restarts=1``;
    ``p_init=0.8`` (initial fraction of pixels a square covers, the paper's value); ``seed=0``
    (torchattacks seeds torch's global generator with it; here that generator's state is saved
    and restored around the attack, so the caller's random stream is untouched); ``loss='margin'``
    (or ``'ce'``).

    Input: ``x`` of shape (N, C, H, W) in [0, 1], ``y`` (N,) labels. Output: same shape as ``x``;
    an example the attack fooled gets its first fooling point, every other one is returned
    unchanged (so ``model(x_adv)`` tells which were fooled). Raises ``ValueError`` for inputs that
    are not (N, C, H, W) images, ``queries`` or ``restarts`` below 1, another norm or loss.

    Example: ``Square(LinfThreat(0.1), queries=500, seed=0)(model, x, y)``.
    """

    name = "square"

    def __init__(self, threat: ThreatModel, queries: int = 5000, restarts: int = 1, p_init: float = 0.8,
                 seed: int = 0, loss: str = "margin"):
        super().__init__(threat)
        if queries < 1 or restarts < 1:
            raise ValueError("queries and restarts must be >= 1")
        if threat.norm not in _NORMS:
            raise ValueError(f"Square supports the norms {', '.join(_NORMS)}, not {threat.norm!r}")
        if loss not in ("margin", "ce"):
            raise ValueError(f"unknown Square loss {loss!r}; use margin or ce")
        self.queries, self.restarts, self.p_init, self.seed, self.loss = queries, restarts, p_init, int(seed), loss

    def forward(self, model, x, y):
        if x.dim() != 4:
            raise ValueError(f"Square needs (N, C, H, W) images, got shape {tuple(x.shape)}")
        if self.threat.eps == 0 or len(x) == 0:
            return x.clone()
        import torchattacks  # a core dependency; imported here to keep `import rcsweep` fast

        attack = torchattacks.Square(model, norm=_NORMS[self.threat.norm], eps=self.threat.eps,
                                     n_queries=self.queries, n_restarts=self.restarts, p_init=self.p_init,
                                     loss=self.loss, seed=self.seed)
        attack.device = x.device
        with rng_kept(x.device), torch.no_grad():
            x_adv = attack(x, y)
        # torchattacks keeps the perturbation in the ball and [0, 1]; project against rounding error
        return self.threat.project(x_adv, x)

    def __repr__(self):
        return f"Square({self.threat}, queries={self.queries}, restarts={self.restarts}, seed={self.seed})"
