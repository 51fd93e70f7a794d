"""Fast adversarial training (Wong et al., "Fast is better than free: Revisiting adversarial
training", ICLR 2020): FGSM from a uniform random start, one attack step per batch, with a check for
catastrophic overfitting."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from .base import Objective, ObjectiveParams, param


@dataclass(frozen=True)
class FastATParams(ObjectiveParams):
    """``alpha`` (default 1.25, in [0.1, 4]): the FGSM step in units of the stage's epsilon (Wong et
    al.: 1.25 * eps, i.e. 10/255 at eps 8/255). Trial parameter ``fast_at_alpha``."""
    alpha: float = param(1.25, 0.1, 4.0, "multiple of epsilon")


class FastAT(Objective):
    """Fast AT, Wong et al. 2020: ``CE(f(x_adv), y)`` with ``x_adv`` one FGSM step of ``alpha * eps``
    from a uniform random start in the epsilon ball (rcsweep's PGD with one step), in eval mode as
    rcsweep's PGD-AT. Parameters: :class:`FastATParams` (``alpha=1.25``). 2 forward-backward passes per
    example whatever ``attack_steps``. Configuration name: ``fast_at``.

    Catastrophic overfitting (FGSM training's failure: robustness to PGD collapses within an epoch
    while FGSM accuracy stays high) is checked after every epoch on up to 200 validation images at
    the full epsilon: PGD-10 accuracy below ``COLLAPSE_FRACTION`` of its best so far (or below
    ``NEAR_ZERO``) while FGSM accuracy is at least ``FGSM_GAP`` above it. The epoch's stats and
    history then carry ``catastrophic_overfitting: true`` and a RuntimeWarning is issued; training
    goes on (it neither stops nor restores an earlier epoch), so trials keep equal epochs and their
    FLOPs, and a resumed trial is the same trial; the flag tells readers to distrust or drop it.
    """

    name = "fast_at"
    Params = FastATParams
    COLLAPSE_FRACTION = 0.2
    NEAR_ZERO = 0.02
    FGSM_GAP = 0.3

    def __init__(self, params=None):
        super().__init__(params)
        self.best_pgd = 0.0

    def forward_backward_passes(self, attack_steps: int) -> int:
        return 2

    def loss(self, model, x, y, threat, attack_steps: int):
        import torch.nn.functional as F

        from ..attacks import PGD

        x_adv = PGD(threat, steps=1, step_size=self.params.alpha * threat.eps)(model, x, y)
        logits = model(x_adv)
        return F.cross_entropy(logits, y), logits

    def epoch_checks(self, model, x, y, threat, device) -> dict:
        import torch

        from ..attacks import FGSM, PGD

        x, y = x.to(device), y.to(device)
        accs = {}
        for key, attack in (("val_fgsm_acc", FGSM(threat)), ("val_pgd10_acc", PGD(threat, steps=10))):
            x_adv = attack(model, x, y)
            was_training = model.training
            model.eval()
            with torch.no_grad():
                accs[key] = (model(x_adv).argmax(1) == y).float().mean().item()
            model.train(was_training)
        return {**accs, "catastrophic_overfitting": self.overfitting(accs["val_fgsm_acc"], accs["val_pgd10_acc"])}

    def overfitting(self, fgsm_acc: float, pgd_acc: float) -> bool:
        """Update the best PGD accuracy; whether ``pgd_acc`` collapsed while ``fgsm_acc`` stayed high
        (warns when it did)."""
        collapsed = pgd_acc < self.COLLAPSE_FRACTION * self.best_pgd or pgd_acc < self.NEAR_ZERO
        self.best_pgd = max(self.best_pgd, pgd_acc)
        hit = collapsed and fgsm_acc >= pgd_acc + self.FGSM_GAP
        if hit:
            warnings.warn(f"fast_at: catastrophic overfitting: PGD-10 accuracy {pgd_acc:.3f} (best so far "
                          f"{self.best_pgd:.3f}) while FGSM accuracy is {fgsm_acc:.3f}; distrust this model "
                          f"(lower fast_at_alpha, or use adversarial)", RuntimeWarning, stacklevel=2)
        return hit
