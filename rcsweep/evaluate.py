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

In the stack of stages this module sits below training (which measures validation robust accuracy
with :func:`robust_accuracy`) and above compression (the float twin is
:func:`rcsweep.compress.int8.float_copy`); it imports no training code.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .attacks import APGD, FGSM, PGD, Square, threat_model
from .batching import batches
from .compress.fake_quant import ActFakeQuant
from .compress.int8 import float_copy
from .device import eval_batch_size, float32

LARGE_EPS = {"linf": 0.5}  # L2: 0.5 * sqrt(dim), set per input
CHECK_EXAMPLES = 200
CHECK_TOLERANCE = 0.03  # accuracies on the same CHECK_EXAMPLES examples; 3 points absorbs restart noise

SQUARE_QUERIES = 500
"""Queries (model forwards per example) of the black-box Square Attack that models quantizing their
activations face at ``eps_eval``, on the survivors among the first :data:`SQUARE_EXAMPLES` test
images (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020; torchattacks' ``Square``: one
restart, ``p_init`` 0.8, margin loss, its square-size schedule rescaled to this budget).

AutoAttack runs 5000 queries on every image; 500 on the check subset keeps Square within about the
cost of the white-box evaluation it checks. Measured on digits (adversarially pretrained digits_cnn
at w4a2, eps 0.1, 360 test images, one CPU thread, three seeds): APGD-CE 20 x 2 + APGD-DLR 20 + the
float-twin transfer took 0.8-1.0 s, the rest of the evaluation (masking checks) about 0.2 s, and
Square with 500 queries on the ~165 survivors among the first 200 images 1.05-1.25 s (1000
queries: 2.4 s; 5000 on all 360 images: 11 s). On such a small model the time is mostly the
attack's per-query overhead; counted in model forwards it is at most 500 per surviving check image
(about 165 x 500 = 83k here), against about 3 forwards per forward-backward pass times up to
20 x 2 + 20 + 20 = 80 passes per surviving test image for the white-box attacks (about 70k here,
more on larger test sets). On that model Square (after the white-box attacks at the default
budget) fooled 1-7 more of the 200 check images with 500 queries, 3-7 with 1000 and 7-10 with 2000.
"""

SQUARE_EXAMPLES = CHECK_EXAMPLES
"""Images Square attacks: the first :data:`CHECK_EXAMPLES` test images (the masking checks'
subset), only those still correctly classified after the white-box attacks."""

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


def _top_share(labels: torch.Tensor) -> float:
    """Share of the most frequent value among ``labels`` (0.0 for none)."""
    return torch.bincount(labels.long()).max().item() / len(labels) if len(labels) else 0.0


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


def black_box_check(model: nn.Module, x, y, alive: torch.Tensor, *, norm: str, eps: float, device="cpu",
                    queries: int = SQUARE_QUERIES, n: int = SQUARE_EXAMPLES, seed: int | None = None,
                    batch_size: int = 256) -> tuple[torch.Tensor, dict]:
    """Square Attack (black-box; :class:`rcsweep.attacks.Square`, torchattacks' implementation) on
    the first ``n`` examples still in ``alive`` (bool, one per example of ``x``: the survivors of the
    white-box attacks at ``eps``), at ``eps`` (pixel units) and ``norm``, ``queries`` per example.

    Returns ``(alive, check)``: a copy of ``alive`` with the examples Square fooled set to False
    (the worst case per example, as AutoAttack counts it), and the ``black_box`` masking check:
    ``value`` = [white-box robust accuracy, robust accuracy after Square] on the first ``n``
    examples; it fails when Square lowers it by more than :data:`CHECK_TOLERANCE`, i.e. the
    gradient-based attacks missed examples a gradient-free one finds (gradient masking). ``seed``
    (default: drawn from torch's global generator, so a seeded trial is reproducible) is recorded.
    Inputs that are not (N, C, H, W) images skip the attack (the check passes, ``skipped``)."""
    n = min(n, len(x))
    alive = alive.clone()
    before = alive[:n].clone()
    if x.dim() != 4:
        return alive, {"passed": True, "skipped": True, "value": None,
                       "detail": f"skipped: Square needs (N, C, H, W) images, not shape {tuple(x.shape[1:])}"}
    if seed is None:
        seed = int(torch.randint(0, 2 ** 31 - 1, ()).item())
    attack = Square(threat_model(norm, eps), queries=queries, seed=seed)
    attacked = int(before.sum())
    t0 = time.perf_counter()
    alive[:n] = robust_correct(model, x[:n], y[:n], [attack], device, batch_size, alive=before)
    white, worst = before.float().mean().item() if n else 0.0, alive[:n].float().mean().item() if n else 0.0
    fooled = int((before & ~alive[:n]).sum())
    return alive, {"passed": white - worst <= CHECK_TOLERANCE, "value": [white, worst], "queries": queries,
                   "examples": n, "attacked": attacked, "fooled": fooled, "seed": seed,
                   "seconds": time.perf_counter() - t0,
                   "detail": f"Square ({queries} queries) fooled {fooled} of the {attacked} examples the white-box "
                             f"attacks left standing among the first {n}: robust accuracy {white:.3f} -> {worst:.3f}"}


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
