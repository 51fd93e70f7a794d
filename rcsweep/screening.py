"""The rung screening of early stopping (issue 16): a cheap, fixed measurement of a model during
its trial, the same for every trial at every rung so that their points are comparable.

Clean accuracy and the accuracy under PGD (Madry et al. 2018; ``steps`` steps of size
``2.5 eps / steps``, one random start seeded by ``seed``, at the trial's ``eps_eval`` and ``norm``)
on the first ``min(size, len(val))`` images of the ``val`` split, never ``test``: the final
evaluation's split stays unseen by every decision. PGD-10 is far weaker than the final APGD
evaluation, so a screened robust accuracy overstates the final one; it is only ever compared with
other trials' screened values, never with a final objective (the metrics have names of their own,
``screen_*`` in :mod:`rcsweep.metrics_table`).

The trial's random state is left as it was (:func:`rcsweep.device.rng_kept`): a screened trial trains
exactly as an unscreened one, and its model's train/eval mode is restored. The cost is counted,
not estimated: every forward pass through the model (:class:`rcsweep.metrics.PassCounter`).
Written here rather than taken from a library: it is a fixed PGD over a fixed subset, which
:func:`rcsweep.evaluate.robust_correct` runs.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .attacks import PGD, threat_model
from .device import float32, rng_kept
from .evaluate import robust_correct
from .metrics import PassCounter


def screen(model: nn.Module, val: tuple, *, norm: str, eps: float, macs: int, rung: int, size: int = 512,
           steps: int = 10, seed: int = 0, device="cpu") -> dict:
    """One rung's screening of ``model``.

    Shape: ``val`` = (images (N, C, H, W) in [0, 1], labels (N,)); the first ``min(size, N)`` are
    screened. ``eps`` in pixel units of ``norm`` (``linf`` or ``l2``); ``macs``: the model's MACs
    per example (for the FLOPs); ``rung``: fine-tuning epochs done (0: the compressed model before
    fine-tuning). Returns ``{"rung", "clean_acc", "robust_acc", "n", "flops", "seconds"}``:
    accuracies as fractions of ``n`` images, ``flops`` counted (2 per MAC, x3 with a backward
    pass), ``seconds`` of wall time."""
    t0 = time.perf_counter()
    x, y = val[0][:size], val[1][:size]
    dev = torch.device(device)
    was_training = model.training
    try:
        with rng_kept(dev), float32(dev), \
                PassCounter(model) as passes:
            torch.manual_seed(seed)
            clean = robust_correct(model, x, y, [], dev)
            robust = clean if eps <= 0 else robust_correct(
                model, x, y, [PGD(threat_model(norm, eps), steps=steps, early_stop=True)], dev, alive=clean)
    finally:
        model.train(was_training)
    n = len(y)
    return {"rung": int(rung), "clean_acc": clean.float().mean().item(), "robust_acc": robust.float().mean().item(),
            "n": n, "flops": passes.flops(macs), "seconds": time.perf_counter() - t0}


def screening_metrics(history: list[dict]) -> dict:
    """The results.csv metrics of a trial's screening ``history`` (its :func:`screen` results in
    rung order): the last rung's accuracies and rung (``screen_clean_acc``, ``screen_robust_acc``,
    ``screen_rung``), every rung (``screen_history``), and the total cost (``flops_screen``,
    ``time_screen_s``). Empty for no history."""
    if not history:
        return {}
    last = history[-1]
    return {"screen_clean_acc": last["clean_acc"], "screen_robust_acc": last["robust_acc"],
            "screen_rung": last["rung"], "screen_history": list(history),
            "flops_screen": sum(h["flops"] for h in history), "time_screen_s": sum(h["seconds"] for h in history)}
