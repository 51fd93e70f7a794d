"""One epoch loop shared by pretraining and fine-tuning, clean or PGD-adversarial (Madry et al.).

Adversarial training uses PGD with a random start at epsilon ``eps`` (pixel units); callers ramp
epsilon up over the first epochs, because PGD training of a net without BatchNorm from scratch at
the full epsilon collapses to chance. A NaN/inf loss or an accuracy collapse raises
:class:`TrainingCollapsed` rather than returning a useless model. Mini-batches and clean accuracy
come from :mod:`rcsweep.batching`, the validation robust accuracy from :mod:`rcsweep.evaluate`
(both below this module).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import PGD, threat_model
from .batching import accuracy, batches
from .errors import TrainingCollapsed
from .evaluate import robust_accuracy


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_acc: float  # on the (adversarial, when training adversarially) training batches
    eps: float
    lr: float
    seconds: float
    forward_backward_passes: int  # per example: 1 (clean) or 1 + attack steps (adversarial)
    val_clean_acc: Optional[float] = None
    val_robust_acc: Optional[float] = None


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def lr_at(schedule: str, base_lr: float, epoch: int, epochs: int) -> float:
    """Learning rate for ``epoch`` (0-based) of ``epochs``: cosine to 0, step (x0.1 at 50% and 75%)
    or constant."""
    if schedule == "constant" or epochs <= 1:
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    return base_lr * (0.1 ** ((epoch >= epochs // 2) + (epoch >= 3 * epochs // 4)))


def eps_at(eps: float, epoch: int, ramp_epochs: int) -> float:
    """Linear epsilon warm-up: eps * (epoch + 1) / (ramp_epochs + 1) during the ramp, then eps."""
    if ramp_epochs <= 0 or epoch >= ramp_epochs:
        return eps
    return eps * (epoch + 1) / (ramp_epochs + 1)


def train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, *,
                batch_size: int, device: torch.device, norm: str = "linf", eps: float = 0.0,
                attack_steps: int = 10, generator=None, after_step: Optional[Callable[[], None]] = None,
                progress: Optional[str] = None):
    """Train one epoch; adversarially when ``eps > 0``. Returns (mean loss, train accuracy).

    ``after_step`` runs after every optimiser step (compression uses it to keep masks and
    quantisation grids in force)."""
    attack = PGD(threat_model(norm, eps), steps=attack_steps) if eps > 0 else None
    total_loss, correct, seen = 0.0, 0, 0
    it = batches(x, y, batch_size, shuffle=True, generator=generator)
    bar = None
    if progress and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=math.ceil(len(x) / batch_size), desc=progress, leave=False)
        except ImportError:
            pass
    model.train()
    for xb, yb in it:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if attack is not None:
            xb = attack(model, xb, yb)  # eval-mode attack, as in Madry et al.'s reference code
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if not torch.isfinite(loss):
            raise TrainingCollapsed(f"loss became {loss.item()} (lr too high?)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        total_loss += loss.item() * len(xb)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(xb)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return total_loss / max(seen, 1), correct / max(seen, 1)


def fit(model: nn.Module, train: tuple, val: tuple, *, epochs: int, lr: float, lr_schedule: str,
        momentum: float, weight_decay: float, batch_size: int, device, seed: int, norm: str = "linf",
        eps: float = 0.0, eps_ramp_epochs: int = 0, attack_steps: int = 10, num_classes: int = 10,
        after_step=None, on_epoch: Optional[Callable[[EpochStats], None]] = None,
        desc: str = "train", start_epoch: int = 0, opt_state: Optional[dict] = None) -> list[EpochStats]:
    """Train for ``epochs`` epochs with SGD + momentum and the LR schedule; adversarially if
    ``eps > 0`` with an epsilon ramp. Validation clean (and, if adversarial, robust) accuracy is
    measured every epoch on up to 500 ``val`` images.

    Collapse detection: validation clean accuracy that falls below 1.5x chance after having
    reached 2.5x chance, or is still below 1.5x chance after the last epoch, raises
    :class:`TrainingCollapsed` before ``on_epoch`` sees that epoch (so it is never checkpointed: a
    resumed run cannot skip the check).
    """
    model.to(device)
    opt = make_optimizer(model, lr, momentum, weight_decay)
    if opt_state:
        opt.load_state_dict(opt_state)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(start_epoch):  # keep the shuffling sequence identical when resuming
        torch.randperm(len(train[0]), generator=gen)
    xv, yv = val[0][:500], val[1][:500]
    history, best = [], 0.0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        cur_lr = lr_at(lr_schedule, lr, epoch, epochs)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        cur_eps = eps_at(eps, epoch, eps_ramp_epochs) if eps > 0 else 0.0
        loss, acc = train_epoch(model, train[0], train[1], opt, batch_size=batch_size, device=device,
                                norm=norm, eps=cur_eps, attack_steps=attack_steps, generator=gen,
                                after_step=after_step, progress=f"{desc} {epoch + 1}/{epochs}")
        stats = EpochStats(epoch, loss, acc, cur_eps, cur_lr, time.perf_counter() - t0,
                           1 + (attack_steps if cur_eps > 0 else 0))
        stats.val_clean_acc = accuracy(model, xv, yv, device)
        if eps > 0:
            stats.val_robust_acc = robust_accuracy(model, xv[:200], yv[:200], norm=norm, eps=eps,
                                                   steps=attack_steps, restarts=1, device=device)
        history.append(stats)
        best = max(best, stats.val_clean_acc)
        chance = 1.0 / num_classes
        fell = best >= 2.5 * chance and stats.val_clean_acc < 1.5 * chance
        never = epoch == epochs - 1 and stats.val_clean_acc < 1.5 * chance
        if fell or never:
            raise TrainingCollapsed(
                f"validation accuracy {'collapsed' if fell else 'stayed'} at {stats.val_clean_acc:.3f} "
                f"(chance {chance:.2f}) at epoch {epoch + 1}, eps {cur_eps:.4g}; "
                f"lower lr or lengthen eps_ramp_epochs")
        if on_epoch is not None:  # after the check: a collapsed epoch is never checkpointed and resumed from
            on_epoch(stats)
    return history
