"""One epoch loop shared by pretraining and fine-tuning, for any training objective.

``fit(model, train, val, spec, device, hooks)`` trains with SGD + momentum under a
:class:`TrainSpec`, built in one place (:meth:`TrainSpec.for_stage`) from the trial configuration;
the batch loss comes from the spec's objective (:mod:`rcsweep.objectives`: standard, PGD-AT, TRADES,
MART, fast AT). Adversarial objectives ramp epsilon (pixel units) up over the first epochs, because
PGD training of a net without BatchNorm from scratch at the full epsilon collapses to chance. A
NaN/inf loss or an accuracy collapse raises :class:`TrainingCollapsed` rather than returning a
useless model. Mini-batches and clean accuracy come from :mod:`rcsweep.batching`, the validation
robust accuracy from :mod:`rcsweep.evaluate` (both below this module).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .attacks import threat_model
from .batching import accuracy, batches
from .config import TrialConfig
from .device import autocast
from .errors import TrainingCollapsed
from .evaluate import robust_accuracy
from .objectives import Objective, Standard


@dataclass
class EpochStats:
    """One epoch's numbers (a history entry is ``vars(stats)``). The objective's
    :meth:`~rcsweep.objectives.Objective.epoch_checks` add theirs as attributes (fast AT:
    ``catastrophic_overfitting``, ``val_fgsm_acc``, ``val_pgd10_acc``)."""
    epoch: int
    loss: float
    train_acc: float  # on the logits the objective reports (the adversarial ones for PGD-AT, MART, fast AT)
    eps: float
    lr: float
    seconds: float
    forward_backward_passes: int  # per example: the objective's (1 while eps is 0)
    val_clean_acc: Optional[float] = None
    val_robust_acc: Optional[float] = None


@dataclass(frozen=True)
class TrainSpec:
    """What one training stage runs. ``eps`` (pixel units) is the full epsilon, reached after
    ``eps_ramp_epochs`` epochs of linear warm-up; 0 trains clean whatever the objective.
    ``attack_steps``: PGD steps of the objectives that run PGD (and of the validation attack).
    ``bf16``: the objective's loss, its attack included, runs under bf16 autocast (``precision:
    bf16``); the validation accuracies stay float32."""
    objective: Objective
    epochs: int
    lr: float
    lr_schedule: str
    momentum: float
    weight_decay: float
    batch_size: int
    seed: int
    norm: str = "linf"
    eps: float = 0.0
    eps_ramp_epochs: int = 0
    attack_steps: int = 10
    num_classes: int = 10
    desc: str = "train"
    bf16: bool = False

    @classmethod
    def for_stage(cls, cfg: TrialConfig, stage: str, num_classes: int) -> "TrainSpec":
        """The spec of a trial's ``stage`` (``pretrain`` or ``finetune``, not ``none``): the one place
        that maps the configuration onto training."""
        objective = cfg.objective(stage)
        common = dict(objective=objective, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                      batch_size=cfg.batch_size, norm=cfg.norm, attack_steps=cfg.attack_steps,
                      num_classes=num_classes, desc=stage, bf16=cfg.precision == "bf16")
        if stage == "pretrain":
            return cls(epochs=cfg.pretrain_epochs, lr=cfg.lr, lr_schedule=cfg.lr_schedule, seed=cfg.seed,
                       eps=cfg.eps_pretrain if objective.adversarial else 0.0,
                       eps_ramp_epochs=cfg.eps_ramp_epochs or 0, **common)
        return cls(epochs=cfg.finetune_epochs or 0, lr=cfg.finetune_lr, lr_schedule="cosine", seed=cfg.seed + 1,
                   eps=cfg.eps_finetune if objective.adversarial else 0.0, **common)


@dataclass
class FitHooks:
    """Callbacks of :func:`fit`: ``after_step()`` after every optimiser step (compression keeps its
    masks and quantisation grids in force); ``on_epoch(stats)`` after each epoch that passed the
    collapse check (the sweep layer checkpoints there); ``on_state(state)`` just before it, with
    what a fit resumed after that epoch needs to go on exactly as this one does (:func:`train_state`)."""
    after_step: Optional[Callable[[], None]] = None
    on_epoch: Optional[Callable[[EpochStats], None]] = None
    on_state: Optional[Callable[[dict], None]] = None


def train_state(opt: torch.optim.Optimizer, device) -> dict:
    """What training carries from one epoch to the next besides the weights: the optimiser's state
    (SGD's momentum buffers) and torch's random state (the attacks' random starts draw from it), on
    the CPU and, for a CUDA device, that device's. Tensors only (``torch.load(weights_only=True)``)."""
    state = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state()}
    dev = torch.device(device)
    if dev.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(dev)
    return state


def _set_random_state(state: dict, device) -> None:
    torch.set_rng_state(state["rng"])
    dev = torch.device(device)
    if dev.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], dev)


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
                objective: Objective, batch_size: int, device: torch.device, norm: str = "linf",
                eps: float = 0.0, attack_steps: int = 10, generator=None,
                after_step: Optional[Callable[[], None]] = None, progress: Optional[str] = None, bf16: bool = False):
    """Train one epoch on ``objective``'s loss (clean cross-entropy while ``eps`` is 0), under bf16
    autocast when ``bf16`` (the forward passes of the loss and of its attack; the backward pass and
    the weights stay float32). Returns (mean loss, train accuracy)."""
    threat = threat_model(norm, eps) if eps > 0 else None
    if threat is None:
        objective = Standard()
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
        with autocast(device, bf16):
            loss, logits = objective.loss(model, xb, yb, threat, attack_steps)
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


def fit(model: nn.Module, train: tuple, val: tuple, spec: TrainSpec, device, hooks: Optional[FitHooks] = None, *,
        start_epoch: int = 0, state: Optional[dict] = None) -> list[EpochStats]:
    """Train ``model`` on ``train = (images, labels)`` for ``spec.epochs`` epochs with SGD + momentum
    and the LR schedule, on the spec's objective with its epsilon ramp. Validation clean (and, if
    adversarial, robust: PGD with ``attack_steps``, at the full epsilon) accuracy is measured every
    epoch on up to 500 (200) ``val`` images, then the objective's own checks run.
    ``start_epoch``/``state`` resume a stage from a checkpoint: ``state`` is what ``hooks.on_state``
    was given after epoch ``start_epoch - 1`` (:func:`train_state`), so that the resumed fit ends with
    the same weights as an uninterrupted one (without it momentum restarts from zero and the attacks
    draw other random starts).

    Collapse detection: validation clean accuracy that falls below 1.5x chance after having
    reached 2.5x chance, or is still below 1.5x chance after the last epoch, raises
    :class:`TrainingCollapsed` before ``on_epoch`` sees that epoch (so it is never checkpointed: a
    resumed run cannot skip the check).
    """
    hooks = hooks or FitHooks()
    model.to(device)
    opt = make_optimizer(model, spec.lr, spec.momentum, spec.weight_decay)
    if state:
        opt.load_state_dict(state["optimizer"])
        _set_random_state(state, device)
    gen = torch.Generator().manual_seed(spec.seed)
    for _ in range(start_epoch):  # keep the shuffling sequence identical when resuming
        torch.randperm(len(train[0]), generator=gen)
    xv, yv = val[0][:500], val[1][:500]
    history, best, eps, epochs = [], 0.0, spec.eps, spec.epochs
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        cur_lr = lr_at(spec.lr_schedule, spec.lr, epoch, epochs)
        for g in opt.param_groups:
            g["lr"] = cur_lr
        cur_eps = eps_at(eps, epoch, spec.eps_ramp_epochs) if eps > 0 else 0.0
        loss, acc = train_epoch(model, train[0], train[1], opt, objective=spec.objective, batch_size=spec.batch_size,
                                device=device, norm=spec.norm, eps=cur_eps, attack_steps=spec.attack_steps,
                                generator=gen, after_step=hooks.after_step, progress=f"{spec.desc} {epoch + 1}/{epochs}",
                                bf16=spec.bf16)
        passes = spec.objective.forward_backward_passes(spec.attack_steps) if cur_eps > 0 else 1
        stats = EpochStats(epoch, loss, acc, cur_eps, cur_lr, time.perf_counter() - t0, passes)
        stats.val_clean_acc = accuracy(model, xv, yv, device)
        if eps > 0:
            stats.val_robust_acc = robust_accuracy(model, xv[:200], yv[:200], norm=spec.norm, eps=eps,
                                                   steps=spec.attack_steps, restarts=1, device=device,
                                                   num_classes=spec.num_classes)
            vars(stats).update(spec.objective.epoch_checks(model, xv[:200], yv[:200], threat_model(spec.norm, eps),
                                                           device))
        history.append(stats)
        best = max(best, stats.val_clean_acc)
        chance = 1.0 / spec.num_classes
        fell = best >= 2.5 * chance and stats.val_clean_acc < 1.5 * chance
        never = epoch == epochs - 1 and stats.val_clean_acc < 1.5 * chance
        if fell or never:
            raise TrainingCollapsed(
                f"validation accuracy {'collapsed' if fell else 'stayed'} at {stats.val_clean_acc:.3f} "
                f"(chance {chance:.2f}) at epoch {epoch + 1}, eps {cur_eps:.4g}; "
                f"lower lr or lengthen eps_ramp_epochs")
        if hooks.on_state is not None:
            hooks.on_state(train_state(opt, device))
        if hooks.on_epoch is not None:  # after the check: a collapsed epoch is never checkpointed and resumed from
            hooks.on_epoch(stats)
    return history
