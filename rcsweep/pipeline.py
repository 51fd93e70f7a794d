"""One trial, without Ray: pretrain -> compress -> fine-tune -> evaluate.

Each stage is a typed function that the sweep layer also calls one by one (to checkpoint between
stages and share pretrained models); :func:`run_trial` is the whole pipeline in one place.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .checkpoint import library_versions, load_model, save_model
from .compress import Compression, compress_
from .compress.int8 import integer_check
from .config import SCHEMA_VERSION, TrialConfig
from .data import DatasetInfo, dataset_info, load_dataset
from .evaluate import EvalResult, evaluate
from .fileio import atomic_write_json
from .metrics import count_macs, efficiency, training_flops
from .models import build_model
from .train import EpochStats, fit


@dataclass
class TrialData:
    info: DatasetInfo
    train: tuple  # (images, labels)
    val: tuple
    test: tuple


def resolve_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_trial_data(cfg: TrialConfig, data_dir=None) -> TrialData:
    kw = dict(data_dir=data_dir, train_size=cfg.train_size, val_size=cfg.val_size, test_size=cfg.test_size)
    return TrialData(dataset_info(cfg.dataset), load_dataset(cfg.dataset, "train", **kw),
                     load_dataset(cfg.dataset, "val", **kw), load_dataset(cfg.dataset, "test", **kw))


def pretrain(cfg: TrialConfig, data: TrialData, device, on_epoch: Optional[Callable[[EpochStats], None]] = None):
    """Train a dense model from scratch, standard or PGD-adversarial. Returns (model, history)."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.info, cfg.width)
    adv = cfg.pretrain == "adversarial"
    history = fit(model, data.train, data.val, epochs=cfg.pretrain_epochs, lr=cfg.lr, lr_schedule=cfg.lr_schedule,
                  momentum=cfg.momentum, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, device=device,
                  seed=cfg.seed, norm=cfg.norm, eps=cfg.eps_pretrain if adv else 0.0,
                  eps_ramp_epochs=cfg.eps_ramp_epochs or 0, attack_steps=cfg.attack_steps,
                  num_classes=data.info.num_classes, on_epoch=on_epoch, desc="pretrain")
    return model, history


def compress(model: nn.Module, cfg: TrialConfig, data: TrialData, device) -> Compression:
    """Compress in place; calibration (PTQ) uses the ``val`` split, never ``test``."""
    return compress_(model, cfg, calib=data.val, device=device)


def finetune(model: nn.Module, comp: Compression, cfg: TrialConfig, data: TrialData, device,
             on_epoch=None, start_epoch: int = 0, opt_state=None) -> list[EpochStats]:
    """Fine-tune the compressed model (clean or adversarial) while its compression stays in force."""
    if cfg.finetune == "none" or cfg.finetune_epochs == 0:
        return []
    adv = cfg.finetune == "adversarial"
    history = fit(model, data.train, data.val, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, lr_schedule="cosine",
                  momentum=cfg.momentum, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, device=device,
                  seed=cfg.seed + 1, norm=cfg.norm, eps=cfg.eps_finetune if adv else 0.0, eps_ramp_epochs=0,
                  attack_steps=cfg.attack_steps, num_classes=data.info.num_classes, after_step=comp.enforce,
                  on_epoch=on_epoch, desc="finetune", start_epoch=start_epoch, opt_state=opt_state)
    comp.finalize()  # e.g. round the trained weights onto their quantization grid
    return history


def evaluate_model(model: nn.Module, cfg: TrialConfig, data: TrialData, device) -> EvalResult:
    x, y = data.test
    return evaluate(model, x, y, norm=cfg.norm, eps_eval=cfg.eps_eval, eps_curve=cfg.eps_curve,
                    steps=cfg.eval_steps, restarts=cfg.eval_restarts, device=device,
                    num_classes=data.info.num_classes)


def stage_flops(cfg: TrialConfig, macs_dense: int, macs_compressed: int, n_train: int) -> dict:
    pre_passes = 1 + (cfg.attack_steps if cfg.pretrain == "adversarial" else 0)
    ft_passes = 1 + (cfg.attack_steps if cfg.finetune == "adversarial" else 0)
    return {"flops_pretrain": training_flops(macs_dense, n_train, cfg.pretrain_epochs, pre_passes),
            "flops_finetune": training_flops(macs_compressed, n_train, cfg.finetune_epochs or 0, ft_passes)}


def make_record(cfg: TrialConfig, result: EvalResult, eff: dict, times: dict, flops: dict, history: dict) -> dict:
    metrics = {"clean_acc": result.clean_acc, "robust_acc": result.robust_acc,
               "robust_acc_curve": result.to_dict()["robust_acc_curve"], "suspect": result.suspect,
               "suspect_reason": result.suspect_reason, **eff, **times, **flops}
    return {"schema_version": SCHEMA_VERSION, "params": cfg.to_flat(), "metrics": metrics,
            "evaluation": {"attack": result.attack, "n_test": result.n_test, "checks": result.checks},
            "history": history, "versions": library_versions()}


def run_trial(cfg: TrialConfig, out_dir=None, *, data_dir=None, device=None, pretrained_path=None,
              on_epoch=None) -> dict:
    """Run the whole pipeline; returns the trial record. With ``out_dir``, writes ``record.json``,
    ``model.pt`` and ``model.json`` there. ``pretrained_path`` reuses a saved pretrained model."""
    device = resolve_device(device)
    data = load_trial_data(cfg, data_dir)
    times, history = {}, {}
    t = time.perf_counter()
    if pretrained_path is not None:
        model = load_model(pretrained_path, device)
        history["pretrain"] = "reused"
    else:
        model, hist = pretrain(cfg, data, device, on_epoch)
        history["pretrain"] = [vars(h) for h in hist]
    times["time_pretrain_s"] = time.perf_counter() - t
    macs_dense = count_macs(model, data.info.shape)
    dense_params = sum(p.numel() for p in model.parameters())
    t = time.perf_counter()
    comp = compress(model, cfg, data, device)
    times["time_compress_s"] = time.perf_counter() - t
    t = time.perf_counter()
    history["finetune"] = [vars(h) for h in finetune(model, comp, cfg, data, device, on_epoch)]
    times["time_finetune_s"] = time.perf_counter() - t
    t = time.perf_counter()
    result = evaluate_model(model, cfg, data, device)
    int_metrics, int_model = integer_check(model, cfg, data, device)  # w8a8 only: the real integer model
    if int_metrics:
        comp.info["int8"] = int_metrics
    times["time_evaluate_s"] = time.perf_counter() - t
    eff = {**efficiency(model, cfg, data.info.shape, dense_params, int_model=int_model), **int_metrics}
    record = make_record(cfg, result, eff, times, stage_flops(cfg, macs_dense, eff["macs"], len(data.train[0])),
                         history)
    if out_dir is not None:
        out = Path(out_dir)
        save_model(model, out, cfg, {"compression": comp.info})
        atomic_write_json(out / "record.json", record)
    return record
