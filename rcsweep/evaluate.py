"""Evaluation: clean accuracy, robust accuracy at ``eps_eval`` and along ``eps_curve``, and
gradient-masking checks (after fra31/auto-attack's ``checks.py``) recorded with every result.

The evaluation attack is stronger than the training attack (fixed-step PGD): APGD (Croce & Hein,
2020; momentum and an adaptive step size) on cross-entropy with ``eval_steps`` steps and
``eval_restarts`` random restarts, then APGD on the DLR margin loss for the examples that survive
(cross-entropy alone often overstates robustness by a few points); with ``eval_targets`` k >= 1,
APGD-T (targeted DLR on the k most likely other classes, AutoAttack's second attack) instead of
APGD-DLR: stronger, at about k times its cost. Examples already
misclassified are never attacked again, and an example fooled at a smaller epsilon counts as
fooled at every larger one (the balls are nested), so the curve costs little more than one point.
A model that quantizes its activations is also attacked by transfer: APGD-CE crafted on its float
twin (:class:`TransferAttack`), since rounding activations masks gradients.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .attacks import APGD, FGSM, PGD, threat_model
from .train import batches

LARGE_EPS = {"linf": 0.5}  # L2: 0.5 * sqrt(dim), set per input
CHECK_EXAMPLES = 200
CHECK_TOLERANCE = 0.03  # accuracies on the same CHECK_EXAMPLES examples; 3 points absorbs restart noise


@dataclass
class EvalResult:
    clean_acc: float
    robust_acc: float
    eps_eval: float
    norm: str
    robust_acc_curve: dict = field(default_factory=dict)  # eps -> robust accuracy
    suspect: bool = False
    suspect_reason: str = ""
    checks: dict = field(default_factory=dict)
    n_test: int = 0
    attack: str = ""
    seconds: float = 0.0

    def to_dict(self):
        d = asdict(self)
        d["robust_acc_curve"] = {f"{k:.6g}": v for k, v in self.robust_acc_curve.items()}
        return d


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
    from .compress.fake_quant import ActFakeQuant

    return any(isinstance(m, ActFakeQuant) for m in model.modules())


def float_twin(model: nn.Module, device="cpu"):
    """The float twin of a model that quantizes its activations (the same effective weights, no
    fake quantizers: :func:`rcsweep.compress.int8.float_copy`), else None."""
    if not quantizes_activations(model):
        return None
    from .compress.int8 import float_copy

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
    return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb, _ in batches(x, x, batch_size, False)])


def robust_correct(model: nn.Module, x, y, attacks, device, batch_size: int = 256, alive=None) -> torch.Tensor:
    """Per-example bool: still correctly classified after every attack in turn. Only examples in
    ``alive`` (default: those classified correctly) are attacked."""
    model.eval()
    if alive is None:
        alive = _predict(model, x, device) == y
    alive = alive.clone()
    for attack in attacks:
        idx = alive.nonzero().squeeze(1)
        for i in range(0, len(idx), batch_size):
            j = idx[i:i + batch_size]
            xb, yb = x[j].to(device), y[j].to(device)
            x_adv = attack(model, xb, yb)
            with torch.no_grad():
                alive[j] = (model(x_adv).argmax(1) == yb).cpu()
    return alive


def robust_accuracy(model, x, y, *, norm: str, eps: float, steps: int = 20, restarts: int = 1,
                    device="cpu", margin: bool = True, num_classes: int = 10) -> float:
    attacks = _eval_attacks(norm, eps, steps, restarts, num_classes)
    return robust_correct(model, x, y, attacks if margin else attacks[:1], device).float().mean().item()


def describe_attack(steps: int, restarts: int, num_classes: int, transfer: bool, attack=None, targets: int = 0) -> str:
    """The ``attack`` text of an :class:`EvalResult` (also how ``rcsweep reevaluate`` tells a result
    the current evaluation would not give)."""
    k = _targets(targets, num_classes)
    second = f"APGD-T {steps} steps x {k} targets" if k else f"APGD-{'DLR' if num_classes >= 3 else 'CW'} {steps} steps"
    text = f"APGD-CE {steps} steps x {restarts} restarts + {second}, random start" if attack is None else attack.__name__
    if transfer:
        text += f" + APGD-CE {steps} steps transferred from the float twin"
    return text


def evaluate(model: nn.Module, x, y, *, norm: str, eps_eval: float, eps_curve=(), steps: int = 20,
             restarts: int = 2, device="cpu", num_classes: int = 10, checks: bool = True, attack=None,
             targets: int = 0) -> EvalResult:
    """Evaluate ``model`` (on the ``test`` split, by convention) and run the masking checks.

    ``attack``: an attack class to run alone instead of the default APGD-CE + APGD-DLR sequence.
    ``targets``: k >= 1 replaces APGD-DLR by APGD-T on k target classes (AutoAttack's second
    attack; about k times the cost of APGD-DLR on the examples still standing)."""
    t0 = time.perf_counter()
    model.eval().to(device)
    clean = _predict(model, x, device) == y
    eps_all = sorted(set([eps_eval, *eps_curve]))
    twin = float_twin(model, device) if attack is None else None
    alive, curve = clean, {}
    for eps in eps_all:  # nested balls: only survivors of the smaller eps are attacked
        if eps > 0:
            attacks = _eval_attacks(norm, eps, steps, restarts, num_classes, attack, targets)
            if twin is not None:  # quantized activations: also examples crafted on the float twin
                attacks.append(TransferAttack(twin, APGD(threat_model(norm, eps), steps=steps, loss="ce")))
            alive = robust_correct(model, x, y, attacks, device, alive=alive)
        curve[eps] = alive.float().mean().item()
    text = describe_attack(steps, restarts, num_classes, twin is not None, attack, targets)
    res = EvalResult(clean_acc=clean.float().mean().item(), robust_acc=curve[eps_eval], eps_eval=eps_eval,
                     norm=norm, robust_acc_curve={e: curve[e] for e in sorted(set(eps_curve))}, n_test=len(x),
                     attack=text)
    if checks and eps_eval > 0:
        res.checks = masking_checks(model, x[:CHECK_EXAMPLES], y[:CHECK_EXAMPLES], norm=norm, eps=eps_eval,
                                    steps=steps, device=device, num_classes=num_classes)
        failed = [f"{k}: {v['detail']}" for k, v in res.checks.items() if not v["passed"]]
        res.suspect, res.suspect_reason = bool(failed), "; ".join(failed)
    res.seconds = time.perf_counter() - t0
    return res


def masking_checks(model, x, y, *, norm: str, eps: float, steps: int, device, num_classes: int = 10) -> dict:
    """Gradient-masking checks on a few examples; each returns {'passed', 'detail', values...}.

    - ``large_eps``: robust accuracy at a very large epsilon (0.5 L-inf) is near zero (<= 0.10);
    - ``more_steps``: PGD with ``steps`` steps is not weaker than with ``steps // 4``;
    - ``pgd_vs_fgsm``: PGD is not weaker than FGSM;
    - ``gradient``: the input gradient of the loss is non-zero for at least half of the examples.
    Accuracies are compared with a tolerance of ``CHECK_TOLERANCE``.
    """
    model.eval()
    out = {}
    big = LARGE_EPS.get(norm, 0.5 * x[0].numel() ** 0.5)
    ra_big = robust_accuracy(model, x, y, norm=norm, eps=big, steps=max(steps, 20), device=device,
                             num_classes=num_classes)
    out["large_eps"] = {"passed": ra_big <= 0.10, "value": ra_big,
                        "detail": f"robust accuracy {ra_big:.3f} at eps {big:.3g} (expected ~0)"}
    t = threat_model(norm, eps)
    ra_few = robust_correct(model, x, y, [PGD(t, steps=max(1, steps // 4), early_stop=True)], device).float().mean().item()
    ra_many = robust_correct(model, x, y, [PGD(t, steps=steps, early_stop=True)], device).float().mean().item()
    out["more_steps"] = {"passed": ra_many <= ra_few + CHECK_TOLERANCE, "value": [ra_few, ra_many],
                         "detail": f"PGD-{max(1, steps // 4)} {ra_few:.3f} vs PGD-{steps} {ra_many:.3f}"}
    ra_fgsm = robust_correct(model, x, y, [FGSM(t)], device).float().mean().item()
    out["pgd_vs_fgsm"] = {"passed": ra_many <= ra_fgsm + CHECK_TOLERANCE, "value": [ra_fgsm, ra_many],
                          "detail": f"FGSM {ra_fgsm:.3f} vs PGD {ra_many:.3f}"}
    xg = x.to(device).requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xg), y.to(device), reduction="sum")
    (g,) = torch.autograd.grad(loss, xg)
    zero_frac = (g.flatten(1).abs().sum(1) == 0).float().mean().item()
    out["gradient"] = {"passed": zero_frac < 0.5, "value": zero_frac,
                       "detail": f"input gradient is zero for {zero_frac:.0%} of examples"}
    return out
