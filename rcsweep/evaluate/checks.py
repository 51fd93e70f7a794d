"""Gradient-masking checks (after fra31/auto-attack's ``checks.py``), recorded with every result:
a robust accuracy is trusted only when attacks that should be stronger are (:func:`masking_checks`:
a huge epsilon, more steps, PGD over FGSM, non-zero input gradients), and, for models that
quantize their activations, when the black-box Square Attack finds no examples the gradient-based
attacks missed (:func:`black_box_check`). A failed check makes the trial ``suspect``.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..attacks import FGSM, PGD, Square, threat_model
from .robust import robust_accuracy, robust_correct

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
