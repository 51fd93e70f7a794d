"""Mini-batches of in-memory tensors and plain (clean) accuracy: the two loops that training,
evaluation and compression share. Below every stage, so none of them imports another for these.

Shape: ``x`` (N, ...) inputs in [0, 1]; ``y`` (N,) integer labels. They may live on the trial's
device (:meth:`rcsweep.pipeline.TrialData.to`): batches are then cut there, with no copy per batch.
"""
from __future__ import annotations

import torch
from torch import nn


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, generator=None):
    """``(x[j], y[j])`` for consecutive index blocks ``j`` of ``batch_size``, in a random order
    drawn from ``generator`` (a CPU generator: the same order on every device) when ``shuffle``,
    else in order. The batches lie where ``x`` and ``y`` lie."""
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(x.device)  # one index copy per epoch, not one per batch
    for i in range(0, n, batch_size):
        j = order[i:i + batch_size]
        yield x[j], y[j]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, batch_size: int = 512) -> float:
    """Share of ``x`` that ``model`` classifies as ``y`` (in eval mode; its mode is restored)."""
    was = model.training
    model.eval()
    correct = 0
    for xb, yb in batches(x, y, batch_size, shuffle=False):
        correct += (model(xb.to(device)).argmax(1) == yb.to(device)).sum().item()
    model.train(was)
    return correct / max(len(x), 1)
