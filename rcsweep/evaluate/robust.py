"""Robust accuracy: attacks run over a test set. Which attacks the evaluation runs (APGD-CE, then
APGD-DLR or APGD-T), the float twin a model that quantizes its activations is also attacked from
(:class:`TransferAttack`), and the loop that attacks only the examples still standing
(:func:`robust_correct`). :func:`robust_accuracy` is what training measures validation robustness
with; :func:`rcsweep.evaluate.evaluate` adds the curve, the checks and the record.
"""
from __future__ import annotations

import torch
from torch import nn

from ..attacks import APGD, PGD, threat_model
from ..batching import batches
from ..compress.fake_quant import ActFakeQuant
from ..compress.int8 import float_copy
from ..device import float32


def _targets(targets: int, num_classes: int) -> int:
    """APGD-T's target classes: at most every other class; none below 4 classes (targeted DLR needs 4 logits)."""
    return min(targets, num_classes - 1) if num_classes >= 4 else 0


def _eval_attacks(norm: str, eps: float, steps: int, restarts: int, num_classes: int, attack=None, targets: int = 0):
    t = threat_model(norm, eps)
    if attack is not None:  # one user-chosen attack class, run alone
        kw = {"steps": steps, "restarts": restarts, "early_stop": True} if issubclass(attack, (PGD, APGD)) else {}
        return [attack(t, **kw)]
    first, k = APGD(t, steps=steps, restarts=restarts, loss="ce"), _targets(targets, num_classes)
    if k:
        return [first, APGD(t, steps=steps, restarts=1, targets=k)]
    return [first, APGD(t, steps=steps, restarts=1, loss="dlr" if num_classes >= 3 else "cw")]


def quantizes_activations(model: nn.Module) -> bool:
    """Whether ``model`` holds an activation fake-quantizer (:class:`rcsweep.compress.fake_quant.ActFakeQuant`)."""
    return any(isinstance(m, ActFakeQuant) for m in model.modules())


def float_twin(model: nn.Module, device="cpu"):
    """The float twin of a model that quantizes its activations (the same effective weights, no
    fake quantizers: :func:`rcsweep.compress.int8.float_copy`), else None."""
    if not quantizes_activations(model):
        return None
    return float_copy(model).to(device)


class TransferAttack:
    """``attack`` crafted on ``source`` (a float twin) and handed to whichever model is evaluated.

    Rounding activations to a grid blunts the gradients a white-box attack follows (the straight-
    through estimator passes them, but the loss the attack climbs is flat between grid points), so a
    quantized model can look more robust than it is; examples crafted on its float twin transfer
    past that. On digits, 4-bit models kept up to 14 points of robust accuracy against white-box
    APGD that this transfer took away."""

    def __init__(self, source: nn.Module, attack):
        self.source, self.attack = source, attack

    def __call__(self, model, x, y):
        return self.attack(self.source, x, y)


@torch.no_grad()
def _predict(model, x, device, batch_size=512):
    """Predicted labels (N,), on the CPU."""
    return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb, _ in batches(x, x, batch_size, False)])


def robust_correct(model: nn.Module, x, y, attacks, device, batch_size: int = 256, alive=None) -> torch.Tensor:
    """Per-example bool (on the CPU): still correctly classified after every attack in turn. Only
    examples in ``alive`` (default: those classified correctly) are attacked. ``x``, ``y`` may lie
    on ``device`` or on the CPU."""
    model.eval()
    if alive is None:
        alive = _predict(model, x, device, max(512, batch_size)) == y.cpu()
    alive = alive.cpu().clone()
    for attack in attacks:
        idx = alive.nonzero().squeeze(1)
        for i in range(0, len(idx), batch_size):
            j = idx[i:i + batch_size]
            xb, yb = x[j.to(x.device)].to(device), y[j.to(y.device)].to(device)
            x_adv = attack(model, xb, yb)
            with torch.no_grad():
                alive[j] = (model(x_adv).argmax(1) == yb).cpu()
    return alive


def robust_accuracy(model, x, y, *, norm: str, eps: float, steps: int = 20, restarts: int = 1,
                    device="cpu", margin: bool = True, num_classes: int = 10, batch_size: int = 256) -> float:
    attacks = _eval_attacks(norm, eps, steps, restarts, num_classes)
    with float32(device):
        return robust_correct(model, x, y, attacks if margin else attacks[:1], device, batch_size).float().mean().item()
