"""One trial, without Ray: pretrain -> compress -> fine-tune -> evaluate.

Each stage is a typed function that the sweep layer also calls one by one (to checkpoint between
stages and share pretrained models); :func:`run_trial` is the whole pipeline in one place.

The datasets here are small (digits, FashionMNIST, CIFAR-10: at most 0.6 GB as float32), so a
trial's splits are tensors moved to its device once (:meth:`TrialData.to`), and every batch is cut
there, not copied from the host per batch. Models go to the device in ``channels_last`` on CUDA
(:func:`rcsweep.device.to_device_`).
"""
from __future__ import annotations

import json
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .checkpoint import library_versions, load_model, save_model
from .compress import Compression, compress_
from .compress.structured import check_structured_target as check_target
from .compress.int8 import integer_check
from .config import SCHEMA_VERSION, TrialConfig
from .data import DatasetInfo, dataset_info, load_dataset
from .device import parse_device, peak_memory_bytes, reset_peak_memory, rng_kept, to_device_
from .energy import STAGES, EnergySettings, StageClock, metric_name
from .evaluate import EvalResult, evaluate
from .fileio import atomic_write_json
from .metrics import PassCounter, count_macs, efficiency, training_flops
from .models import build_model
from .train import EpochStats, FitHooks, TrainSpec, fit
from .trial_status import derive_flags


@dataclass
class TrialData:
    info: DatasetInfo
    train: tuple  # (images, labels)
    val: tuple
    test: tuple

    def to(self, device) -> "TrialData":
        """The splits on ``device`` (the same object when they are there already)."""
        dev = torch.device(device)
        if all(t.device == dev for split in (self.train, self.val, self.test) for t in split):
            return self
        move = lambda split: tuple(t.to(dev) for t in split)  # noqa: E731
        return TrialData(self.info, move(self.train), move(self.val), move(self.test))


def resolve_device(device=None) -> torch.device:
    """``device`` checked against this machine (:func:`rcsweep.device.parse_device`); None: cuda if usable."""
    return parse_device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_trial_data(cfg: TrialConfig, data_dir=None, device="cpu") -> TrialData:
    """The trial's train, val and test splits, as tensors on ``device``."""
    kw = dict(data_dir=data_dir, train_size=cfg.train_size, val_size=cfg.val_size, test_size=cfg.test_size)
    return TrialData(dataset_info(cfg.dataset), load_dataset(cfg.dataset, "train", **kw),
                     load_dataset(cfg.dataset, "val", **kw), load_dataset(cfg.dataset, "test", **kw)).to(device)


def pretrain(cfg: TrialConfig, data: TrialData, device, on_epoch: Optional[Callable[[EpochStats], None]] = None):
    """Train a dense model from scratch on the ``pretrain`` objective. Returns (model, history)."""
    seed_everything(cfg.seed)
    model = to_device_(build_model(cfg.model, data.info, cfg.width), device)
    spec = TrainSpec.for_stage(cfg, "pretrain", data.info.num_classes)
    return model, fit(model, data.train, data.val, spec, device, FitHooks(on_epoch=on_epoch))


def compress(model: nn.Module, cfg: TrialConfig, data: TrialData, device) -> Compression:
    """Compress in place; calibration (PTQ) uses the ``val`` split, never ``test``."""
    return compress_(model, cfg, calib=data.val, device=device)


def finetune(model: nn.Module, comp: Compression, cfg: TrialConfig, data: TrialData, device,
             on_epoch=None, start_epoch: int = 0, state: Optional[dict] = None, on_state=None) -> list[EpochStats]:
    """Fine-tune the compressed model on the ``finetune`` objective while its compression stays in force.
    ``start_epoch``, ``state``, ``on_state``: resuming, as :func:`rcsweep.train.fit`'s."""
    if cfg.finetune == "none" or cfg.finetune_epochs == 0:
        return []
    spec = TrainSpec.for_stage(cfg, "finetune", data.info.num_classes)
    hooks = FitHooks(after_step=comp.enforce, on_epoch=on_epoch, on_state=on_state)
    history = fit(model, data.train, data.val, spec, device, hooks, start_epoch=start_epoch, state=state)
    comp.finalize()  # e.g. round the trained weights onto their quantization grid
    return history


def evaluate_model(model: nn.Module, cfg: TrialConfig, data: TrialData, device) -> EvalResult:
    x, y = data.test
    return evaluate(model, x, y, norm=cfg.norm, eps_eval=cfg.eps_eval, eps_curve=cfg.eps_curve,
                    steps=cfg.eval_steps, restarts=cfg.eval_restarts, device=device,
                    num_classes=data.info.num_classes, targets=cfg.eval_targets)


def sizes_before_training(cfg: TrialConfig, n_calib: int = 64) -> dict:
    """The size metrics of ``cfg``'s compressed model, measured on an untrained copy: what a sampler
    may know of a configuration before it trains (``params``, ``params_nonzero``, ``model_bits``,
    ``macs``, ``macs_nonzero``, ``bops``; :func:`rcsweep.metrics.efficiency` without latency).

    A model of ``cfg.model`` is built with fresh weights and compressed as ``cfg.compression`` says,
    calibrated (PTQ, the pruner's example inputs) on ``n_calib`` uniform images in [0, 1] with
    random labels: no dataset is read, so the sweep's driver can measure without the data. Structured
    pruning removes a fixed share of channels per layer and quantization fixes the bits per weight,
    so ``params`` and ``macs`` equal the trained model's; the counts of nonzero weights
    (``params_nonzero``, ``macs_nonzero``, ``bops``), and ``model_bits`` of low-bit layers, move a
    little with how many weights land on the zero code (on digits' 6-conv net at 2 bits the untrained
    copy counted 55,776 bits, trained models 55,486 to 55,694; ``model_bits`` exact at 4 bits and
    more and for pruning: ``tests/test_pipeline_sizes.py``). Torch's random state is left as it was.
    About 20 ms for digits' net; raises what building or compressing raises (an unknown model, a bad
    compression)."""
    info = dataset_info(cfg.dataset)
    with rng_kept():
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, info, cfg.width)
        dense = sum(p.numel() for p in model.parameters())
        calib = (torch.rand(n_calib, *info.shape), torch.randint(info.num_classes, (n_calib,)))
        compress_(model, cfg, calib=calib)
        sizes = efficiency(model, cfg, info.shape, dense, latency=False)
    return {k: sizes[k] for k in ("params", "params_nonzero", "model_bits", "macs", "macs_nonzero", "bops")}


def stage_flops(cfg: TrialConfig, macs_dense: int, macs_compressed: int, n_train: int) -> dict:
    """Estimated training FLOPs per stage, from each objective's forward-backward passes per example:
    ``flops_pretrain`` (the pretrained model's whole pretraining, fixed: never a share of it where
    trials share that model), ``flops_finetune`` and ``flops_route``, their sum (what producing this
    model alone costs)."""
    pre_passes = cfg.objective("pretrain").forward_backward_passes(cfg.attack_steps)
    ft_passes = cfg.objective("finetune").forward_backward_passes(cfg.attack_steps) if cfg.finetune != "none" else 1
    pre = training_flops(macs_dense, n_train, cfg.pretrain_epochs, pre_passes)
    fine = training_flops(macs_compressed, n_train, cfg.finetune_epochs or 0, ft_passes)
    return {"flops_pretrain": pre, "flops_finetune": fine, "flops_route": pre + fine}


def evaluation_section(result: EvalResult, num_classes: int) -> tuple[dict, dict]:
    """(accuracy metrics, ``evaluation`` section) of a record from one evaluation (also what
    ``rcsweep reevaluate`` replaces)."""
    metrics = {"clean_acc": result.clean_acc, "robust_acc": result.robust_acc,
               "robust_acc_curve": result.to_dict()["robust_acc_curve"],
               "majority_pred_frac": result.majority_pred_frac}
    evaluation = {"attack": result.attack, "n_test": result.n_test, "checks": result.checks,
                  "num_classes": num_classes, "majority_rate": result.majority_rate,
                  "weak_eval": result.weak_eval}
    return metrics, evaluation


def energy_metrics(energy: dict, settings: EnergySettings, source: str) -> dict:
    """``energy_kwh_<stage>`` for every stage (None where unknown: a reused model saved without its
    pretraining's energy), ``energy_source`` and ``co2_g`` (their sum x the grid intensity; None if
    a stage is unknown)."""
    kwh = {metric_name(s): energy.get(metric_name(s)) for s in STAGES}
    known = all(v is not None for v in kwh.values())
    return {**kwh, "energy_source": source, "co2_g": settings.co2_g(sum(kwh.values())) if known else None}


def make_record(cfg: TrialConfig, result: EvalResult, eff: dict, times: dict, flops: dict, history: dict,
                num_classes: int, energy: dict | None = None) -> dict:
    """The trial record (``record.json``): params, metrics (flags derived by
    :func:`rcsweep.trial_status.derive_flags`), evaluation, history, versions. ``energy``: from
    :func:`energy_metrics`."""
    acc, evaluation = evaluation_section(result, num_classes)
    record = {"schema_version": SCHEMA_VERSION, "params": cfg.to_flat(),
              "metrics": {**acc, **eff, **times, **flops, **(energy or {})},
              "evaluation": evaluation, "history": history, "versions": library_versions()}
    return derive_flags(record, num_classes)


@dataclass
class Progress:
    """How far a trial got, as JSON: what a stage checkpoint holds besides the model's weights.

    ``stage``: ``pretrained`` -> ``compressed`` -> ``finetuning`` (after each fine-tuning epoch) ->
    ``evaluated``. ``times``, ``energy`` and ``history`` gather the record's per-stage times
    (``time_<stage>_s``), energies (``energy_kwh_<stage>``) and histories.
    """
    stage: str = "pretrained"
    finetune_epochs_done: int = 0
    times: dict = field(default_factory=dict)
    energy: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    dense: dict = field(default_factory=dict)  # macs and params of the dense model
    #: after a fine-tuning epoch, what the next needs to go on exactly (:func:`rcsweep.train.train_state`:
    #: tensors, not JSON; a stage checkpoint stores it beside the weights)
    train_state: Optional[dict] = field(default=None, repr=False, compare=False)


def continue_trial(model: nn.Module, cfg: TrialConfig, data: TrialData, device, progress: Progress, *,
                   weights: Optional[dict] = None, on_stage=None, on_epoch=None,
                   energy: Optional[EnergySettings] = None):
    """compress -> fine-tune -> evaluate the pretrained dense ``model``, continuing from ``progress``.

    ``weights``: the compressed model's state_dict saved with ``progress`` (stage ``compressed`` or
    ``finetuning``); compression is applied again to the pretrained model (deterministic, and it
    rebuilds the masks and quantizers that fine-tuning keeps in force), then these are loaded.
    ``on_stage(progress, model)`` runs after compression and after each fine-tuning epoch, for
    checkpoints. ``energy``: how energy is estimated where no counter is readable, and the grid
    intensity (default :class:`~rcsweep.energy.EnergySettings`). Returns ``(model, compression, record)``.
    """
    to_device_(model, device)
    settings = energy or EnergySettings()
    if not progress.dense:
        progress.dense = {"macs": count_macs(model, data.info.shape),
                          "params": sum(p.numel() for p in model.parameters())}
    clock = StageClock(settings)
    seed_everything(cfg.seed)
    comp = compress(model, cfg, data, device)
    to_device_(model, device)  # channel pruning makes new weights
    if weights is not None:
        model.load_state_dict(weights)
    if progress.stage == "pretrained":
        _stage_done(progress, "compress", clock)
        progress.stage = "compressed"
        if on_stage is not None:
            on_stage(progress, model)
    if progress.stage in ("compressed", "finetuning"):
        clock = StageClock(settings, offset=(progress.times.get("time_finetune_s", 0.0),  # accumulates across restarts
                                             progress.energy.get(metric_name("finetune"), 0.0)))
        done = progress.history.setdefault("finetune", [])

        def epoch_done(stats: EpochStats):
            done.append(vars(stats))
            progress.stage, progress.finetune_epochs_done = "finetuning", stats.epoch + 1
            _stage_done(progress, "finetune", clock)
            if on_epoch is not None:
                on_epoch(stats)
            if on_stage is not None:
                on_stage(progress, model)

        def keep_state(state: dict):
            progress.train_state = state

        # a stage resumed after epoch k goes on from epoch k's optimiser and random state, where the
        # checkpoint holds it (older checkpoints: from the weights alone, momentum restarted)
        finetune(model, comp, cfg, data, device, epoch_done, start_epoch=progress.finetune_epochs_done,
                 state=progress.train_state if progress.finetune_epochs_done else None, on_state=keep_state)
        progress.train_state = None
        _stage_done(progress, "finetune", clock)
    clock = StageClock(settings)
    with PassCounter(model) as passes:
        result = evaluate_model(model, cfg, data, device)
        int_metrics, int_model = integer_check(model, cfg, data, device)  # w8a8 only: the real integer model
    if int_metrics:
        comp.info["int8"] = int_metrics
    eff = {**efficiency(model, cfg, data.info.shape, progress.dense["params"], int_model=int_model), **int_metrics}
    _stage_done(progress, "evaluate", clock)  # accuracy and efficiency (latency) metrics
    progress.stage = "evaluated"
    flops = {**stage_flops(cfg, progress.dense["macs"], eff["macs"], len(data.train[0])),
             "flops_evaluate": passes.flops(eff["macs"])}
    return model, comp, make_record(cfg, result, eff, progress.times, flops, progress.history,
                                    data.info.num_classes, energy_metrics(progress.energy, settings, clock.source))


def _stage_done(progress: Progress, stage: str, clock: StageClock) -> None:
    progress.times[f"time_{stage}_s"], progress.energy[metric_name(stage)] = clock.read()


def saved_pretrain_energy(path) -> Optional[float]:
    """The energy (kWh) of the pretraining of a saved model: ``energy_kwh_pretrain`` of the
    ``record.json`` beside it, or ``energy_kwh`` of a shared model's ``pretrain.json``; None if
    neither says."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    for name, key in (("record.json", ("metrics", metric_name("pretrain"))), ("pretrain.json", ("energy_kwh",))):
        try:
            value = json.loads((folder / name).read_text())
            for k in key:
                value = value[k]
            return float(value) if value is not None else None
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def runtime_section(device, started: float, **extra) -> dict:
    """The record's ``runtime``: where the trial ran (its ``precision`` is in ``params``).
    ``device`` (``cpu``, ``cuda``, ...), ``device_name``, ``peak_gpu_memory_bytes`` (torch's reserved
    peak since the trial started; None on the CPU), ``threads``, ``host``, ``started`` and ``ended``
    (Unix seconds), plus ``extra`` (the sweep layer's GPU ids, fallback and node)."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"device": str(dev), "device_name": name, "peak_gpu_memory_bytes": peak_memory_bytes(dev),
            "threads": torch.get_num_threads(), "host": socket.gethostname(), "started": started,
            "ended": time.time(), **extra}


def save_trial(out_dir, model: nn.Module, cfg: TrialConfig, comp: Compression, record: dict) -> None:
    """Write ``model.pt``, ``model.json`` and, last, ``record.json`` (its presence marks a finished trial)."""
    out = Path(out_dir)
    save_model(model, out, cfg, {"compression": comp.info})
    atomic_write_json(out / "record.json", record)


def run_trial(cfg: TrialConfig, out_dir=None, *, data_dir=None, device=None, pretrained_path=None,
              on_epoch=None, energy: Optional[EnergySettings] = None) -> dict:
    """Run the whole pipeline; returns the trial record. With ``out_dir``, writes ``record.json``,
    ``model.pt`` and ``model.json`` there. ``pretrained_path`` reuses a saved pretrained model (its
    pretraining energy is read from the ``record.json`` or ``pretrain.json`` beside it).
    ``device``: ``cpu``, ``cuda``, ``cuda:N`` (default: cuda if usable); the record's ``runtime``
    says where it ran (:func:`runtime_section`). ``energy``: see :func:`continue_trial`."""
    started = time.time()
    device = resolve_device(device)
    reset_peak_memory(device)
    check_target(cfg)  # an unreachable compression target fails before any training
    data = load_trial_data(cfg, data_dir, device)
    clock = StageClock(energy or EnergySettings())
    if pretrained_path is not None:
        model, hist = load_model(pretrained_path, device), "reused"
        pretrain_kwh = saved_pretrain_energy(pretrained_path)
    else:
        model, hist = pretrain(cfg, data, device, on_epoch)
        hist = [vars(h) for h in hist]
        pretrain_kwh = clock.read()[1]
    progress = Progress(times={"time_pretrain_s": clock.read()[0]}, history={"pretrain": hist},
                        energy={metric_name("pretrain"): pretrain_kwh})
    model, comp, record = continue_trial(model, cfg, data, device, progress, on_epoch=on_epoch, energy=energy)
    record["runtime"] = runtime_section(device, started)
    if out_dir is not None:
        save_trial(out_dir, model, cfg, comp, record)
    return record
