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
twin (:class:`TransferAttack`), since rounding activations masks gradients, and by the black-box
Square Attack on the masking checks' examples (:data:`SQUARE_QUERIES`, the ``black_box`` check).
An evaluation budget below :data:`EVAL_STEPS_FLOOR` steps or :data:`EVAL_RESTARTS_FLOOR` restarts
is reported in ``EvalResult.weak_eval`` (:func:`eval_budget_warning`).

The evaluation always runs in float32, whatever the trial's ``precision``: bf16 keeps 8 bits of
mantissa, so near a decision boundary the rounded loss is flat or steps in jumps; the attack's
gradients vanish or point nowhere and robust accuracy is overstated (gradient masking by
rounding). A ``bf16`` trial trains under autocast and is evaluated as the float32 model it is.
Attacked batches are sized to the device (:func:`rcsweep.device.eval_batch_size`: 256 on the
CPU); the test images may already lie on the device (no copy per batch then).

In the stack of stages this package sits below training (which measures validation robust accuracy
with :func:`robust_accuracy`) and above compression (the float twin is
:func:`rcsweep.compress.int8.float_copy`); it imports no training code. This module owns the entry
point (:func:`evaluate`), its record (:class:`EvalResult`, :func:`describe_attack`) and the
evaluation-budget floor; :mod:`.robust` runs the attacks over a test set, :mod:`.checks` holds the
masking checks. Every name is importable from ``rcsweep.evaluate``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..attacks import APGD, threat_model
from ..device import eval_batch_size, float32
from .checks import CHECK_EXAMPLES, SQUARE_EXAMPLES, SQUARE_QUERIES, black_box_check, masking_checks
from .checks import CHECK_TOLERANCE, LARGE_EPS  # noqa: F401  (re-exported: importable from rcsweep.evaluate)
from .robust import TransferAttack, _eval_attacks, _predict, _targets, float_twin, quantizes_activations, robust_correct
from .robust import robust_accuracy  # noqa: F401  (re-exported: training imports it from here)

EVAL_STEPS_FLOOR = 20
EVAL_RESTARTS_FLOOR = 2
"""The documented evaluation-budget floor: APGD ``eval_steps`` >= 20 and ``eval_restarts`` >= 2
(rcsweep's defaults). Below it a trial gets the ``weak_eval`` flag (:func:`eval_budget_warning`).

Why: APGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020) adapts its step size at checkpoints placed at fixed
fractions of the step budget (0.22, 0.41, 0.57, ... of ``steps``); with 20 steps they fall at
steps 4, 8, 11, 14, 16, 17, 19, 20, while with 5 steps (1, 2, 3, 4, 5) the step size may halve after every step and
the attack barely leaves its random start. AutoAttack itself runs APGD with 100 steps (and 5
restarts in its ``plus`` version); restarts from random starting points are what Carlini et al.
(2019, "On Evaluating Adversarial Robustness") ask of every evaluation. 20 steps x 2 restarts is
the least that stays close to those attacks at CPU cost: on an adversarially pretrained digits
model at w4a2 and eps 0.1, 5 steps x 1 restart reported 0.867 robust accuracy where 20 x 2
found 0.831 and APGD-50 x 2 with Square 0.797."""


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
    majority_pred_frac: float = 0.0  # share of test images given the most predicted class (1.0: constant)
    majority_rate: float = 0.0  # share of test images of the most frequent true class
    weak_eval: str = ""  # eval_budget_warning(steps, restarts): '' at or above the floor

    def to_dict(self):
        d = asdict(self)
        d["robust_acc_curve"] = {f"{k:.6g}": v for k, v in self.robust_acc_curve.items()}
        return d


def _top_share(labels: torch.Tensor) -> float:
    """Share of the most frequent value among ``labels`` (0.0 for none)."""
    return torch.bincount(labels.long()).max().item() / len(labels) if len(labels) else 0.0


def describe_attack(steps: int, restarts: int, num_classes: int, transfer: bool, attack=None, targets: int = 0,
                    black_box: bool | None = None) -> str:
    """The ``attack`` text of an :class:`EvalResult` (also how ``rcsweep reevaluate`` tells a result
    the current evaluation would not give).

    ``transfer``: the float-twin transfer ran; ``black_box``: the Square check ran (default: as
    ``transfer``; both follow :func:`quantizes_activations` in a trial's evaluation, which always
    runs the checks)."""
    k = _targets(targets, num_classes)
    second = f"APGD-T {steps} steps x {k} targets" if k else f"APGD-{'DLR' if num_classes >= 3 else 'CW'} {steps} steps"
    text = f"APGD-CE {steps} steps x {restarts} restarts + {second}, random start" if attack is None else attack.__name__
    if transfer:
        text += f" + APGD-CE {steps} steps transferred from the float twin"
    if transfer if black_box is None else black_box:
        text += f" + Square {SQUARE_QUERIES} queries on the survivors of the first {SQUARE_EXAMPLES} images"
    return text


def eval_budget_warning(steps: int, restarts: int) -> str:
    """'' when APGD's ``steps`` and ``restarts`` are at or above the floor (:data:`EVAL_STEPS_FLOOR`,
    :data:`EVAL_RESTARTS_FLOOR`: 20 and 2, rcsweep's defaults), else one line saying which setting is
    below it. Both are counts (integers >= 1). Example: ``eval_budget_warning(5, 1)`` ->
    ``'eval_steps 5 < 20, eval_restarts 1 < 2: below the evaluation floor, robust accuracy may be
    overstated'``."""
    low = [f"{name} {v} < {floor}" for name, v, floor in (("eval_steps", steps, EVAL_STEPS_FLOOR),
                                                          ("eval_restarts", restarts, EVAL_RESTARTS_FLOOR))
           if v < floor]
    return f"{', '.join(low)}: below the evaluation floor, robust accuracy may be overstated" if low else ""


def evaluate(model: nn.Module, x, y, *, norm: str, eps_eval: float, eps_curve=(), steps: int = 20,
             restarts: int = 2, device="cpu", num_classes: int = 10, checks: bool = True, attack=None,
             targets: int = 0) -> EvalResult:
    """Evaluate ``model`` (on the ``test`` split, by convention) and run the masking checks.

    ``x``: images (N, C, H, W) in [0, 1]; ``y``: (N,) labels; ``eps_eval`` and ``eps_curve`` in
    pixel units of ``norm`` (``linf`` or ``l2``); ``steps``, ``restarts``: APGD's budget (below
    20 x 2, :func:`eval_budget_warning` fills ``weak_eval``).
    ``attack``: an attack class to run alone instead of the default APGD-CE + APGD-DLR sequence.
    ``targets``: k >= 1 replaces APGD-DLR by APGD-T on k target classes (AutoAttack's second
    attack; about k times the cost of APGD-DLR on the examples still standing).

    A model that quantizes its activations (:func:`quantizes_activations`) is, with ``checks``,
    also attacked at ``eps_eval`` by the black-box Square Attack on the survivors among the first
    :data:`SQUARE_EXAMPLES` images (:func:`black_box_check`, the ``black_box`` check): the examples
    it fools count as fooled in ``robust_acc`` (and at every larger epsilon of the curve), the
    worst case per example as AutoAttack counts it, since Square already ran; the rest of the test
    set keeps its white-box result, so ``robust_acc`` is never higher than without Square.

    Runs in float32 even inside an autocast region (bf16 rounding masks gradients, see the module
    docstring); attacked batches are sized to ``device`` (:func:`rcsweep.device.eval_batch_size`)."""
    with float32(device):
        return _evaluate(model, x, y, norm=norm, eps_eval=eps_eval, eps_curve=eps_curve, steps=steps,
                         restarts=restarts, device=device, num_classes=num_classes, checks=checks, attack=attack,
                         targets=targets)


def _evaluate(model, x, y, *, norm, eps_eval, eps_curve, steps, restarts, device, num_classes, checks, attack,
              targets) -> EvalResult:
    t0 = time.perf_counter()
    model.eval().to(device)
    batch = eval_batch_size(model, tuple(x.shape[1:]), device)
    pred = _predict(model, x, device, max(512, batch))
    clean = pred == y.cpu()
    eps_all = sorted(set([eps_eval, *eps_curve]))
    twin = float_twin(model, device) if attack is None else None
    black_box = checks and eps_eval > 0 and quantizes_activations(model)
    alive, curve, bb_check = clean, {}, None
    for eps in eps_all:  # nested balls: only survivors of the smaller eps are attacked
        if eps > 0:
            attacks = _eval_attacks(norm, eps, steps, restarts, num_classes, attack, targets)
            if twin is not None:  # quantized activations: also examples crafted on the float twin
                attacks.append(TransferAttack(twin, APGD(threat_model(norm, eps), steps=steps, loss="ce")))
            alive = robust_correct(model, x, y, attacks, device, batch, alive=alive)
        if eps == eps_eval and black_box:  # gradient-free: blind to what masks gradients
            alive, bb_check = black_box_check(model, x, y, alive, norm=norm, eps=eps, device=device)
        curve[eps] = alive.float().mean().item()
    text = describe_attack(steps, restarts, num_classes, twin is not None, attack, targets, black_box=black_box)
    res = EvalResult(clean_acc=clean.float().mean().item(), robust_acc=curve[eps_eval], eps_eval=eps_eval,
                     norm=norm, robust_acc_curve={e: curve[e] for e in sorted(set(eps_curve))}, n_test=len(x),
                     attack=text, majority_pred_frac=_top_share(pred), majority_rate=_top_share(y),
                     weak_eval=eval_budget_warning(steps, restarts) if eps_eval > 0 else "")
    if checks and eps_eval > 0:
        res.checks = masking_checks(model, x[:CHECK_EXAMPLES], y[:CHECK_EXAMPLES], norm=norm, eps=eps_eval,
                                    steps=steps, device=device, num_classes=num_classes)
        if bb_check is not None:
            res.checks["black_box"] = bb_check
        failed = [f"{k}: {v['detail']}" for k, v in res.checks.items() if not v["passed"]]
        res.suspect, res.suspect_reason = bool(failed), "; ".join(failed)
    res.seconds = time.perf_counter() - t0
    return res


