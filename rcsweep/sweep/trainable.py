"""The Ray Tune function trainable: one trial, resumable stage by stage.

A trial gets its pretrained model from the sweep's :class:`~.store.PretrainStore` (training it
only if no trial has), then runs :func:`rcsweep.pipeline.continue_trial`, checkpointing after
compression and after every fine-tuning epoch (:mod:`.checkpoints`) and reporting to Tune after
each stage. A restarted trial (a retry, a lost node, ``rcsweep resume``) continues from its newest
valid checkpoint; a trial whose ``record.json`` exists is finished and is never run again. A
trial whose training collapsed (:class:`~rcsweep.errors.TrainingCollapsed`: deterministic, so
Tune's ``max_failures`` retries would only repeat it) writes ``collapsed.json`` and fails again at
once when retried; ``rcsweep resume --retry-failed`` removes the file and runs it again.

Per trial, ``DIR/trials/<trial_id>/`` holds ``record.json``, ``model.pt``, ``model.json`` and
``stages.jsonl`` (one line per stage completed: what ran, where, when); its row in
``DIR/results.csv`` goes ``running`` -> ``finished`` or ``failed`` with the error, or
``early_stopped`` (written by :class:`.scheduler.RungScheduler`).

With the sweep's ``early_stopping``, the trial is screened at each rung it reaches and reports the
rung to Tune (:func:`.rung_report.at_rung`), after that stage's checkpoint: the scheduler decides
while the trial waits on its report. A trial resumed from a rung's checkpoint reports that rung
again (the scheduler answers with the decision it recorded, so a decision lost with a killed driver
still takes effect); a trial with ``early_stopped.json`` is never run again.

A trial runs where Ray placed it (:func:`rcsweep.device.placement_device`): on its GPU when Ray
assigned one, else on the CPU. A GPU assigned on a node where CUDA is not usable (a node declaring
GPUs it lacks) fails the trial in one line, unless the sweep file says ``gpu_fallback: cpu``. The
record's ``runtime`` holds the GPU ids Ray assigned, the device used, any fallback, the node, and
when the trial started and ended.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from pathlib import Path

import ray
import torch
from ray import tune

from ..config import TrialConfig
from ..constraints import apply as apply_constraints
from ..constraints import parse_constraints
from ..device import placement_device, reset_peak_memory
from ..energy import EnergySettings, metric_name
from ..errors import TrainingCollapsed
from ..fileio import atomic_write_json
from ..pipeline import (Progress, check_target, continue_trial, load_trial_data, pretrain, runtime_section,
                        save_trial)
from ..results import record_to_row, upsert_rows
from ..sweepfile import METRICS
from ..screening import screening_metrics
from . import checkpoints
from .rung_report import at_rung, last_rung_report
from .scheduler import stopped
from .store import PretrainStore, pretrain_id

TRIALS_DIR = "trials"
COLLAPSED_FILE = "collapsed.json"  # a trial whose training collapsed; removed by resume --retry-failed
_SCALARS = (int, float, bool, str)


class TrialTimeout(RuntimeError):
    """A trial ran past the sweep's ``trial_timeout_s``."""


def sweep_trial(config: dict) -> None:
    """Run one trial. ``config``: ``trial`` (flat TrialConfig), ``reference`` (bool) and ``_sweep``
    (``dir``, ``trial_timeout_s``, ``cpus_per_trial``, ``gpu_fallback``, ``pretrain_cpus``,
    ``constraints``, ``energy``, ``early_stopping``, ``objectives``), as :mod:`.search` and
    :mod:`.runner` make it. A finished trial that
    violates the sweep's constraints is flagged ``infeasible`` in its record and row
    (:func:`rcsweep.constraints.apply`)."""
    started = time.time()
    sweep = config["_sweep"]
    root = Path(sweep["dir"])
    trial_id = tune.get_context().get_trial_id()
    cfg = TrialConfig.from_flat(config["trial"])
    folder = root / TRIALS_DIR / trial_id
    row = dict(trial_id=trial_id, params=cfg.to_flat(), is_reference=bool(config.get("reference")))
    record = finished_record(folder)
    if record is not None:  # finished before the driver could hear of it: report, never rerun
        upsert_rows(root, [record_to_row(status="finished", record=record, **row)])
        tune.report(final_metrics(record))
        return
    if stopped(folder) is not None:  # stopped at a rung (its row written by the scheduler): never run again
        tune.report({"stage": "early_stopped"})
        return
    collapsed = folder / COLLAPSED_FILE
    if collapsed.is_file():  # Tune's retry of a deterministic failure: fail again at once
        e = TrainingCollapsed(json.loads(collapsed.read_text())["error"] + " (not retried: it collapsed before)")
        upsert_rows(root, [record_to_row(status="failed", error=f"{type(e).__name__}: {e}", **row)])
        raise e
    upsert_rows(root, [record_to_row(status="running", **row)])
    torch.set_num_threads(max(1, math.floor(sweep.get("cpus_per_trial", 1))))
    try:
        record = _run(cfg, root, folder, trial_id, sweep, started)
    except Exception as e:
        upsert_rows(root, [record_to_row(status="failed", error=f"{type(e).__name__}: {e}", **row)])
        if isinstance(e, TrainingCollapsed):
            atomic_write_json(collapsed, {"error": str(e)})
        raise
    upsert_rows(root, [record_to_row(status="finished", record=record, **row)])
    tune.report(final_metrics(record))


def _run(cfg: TrialConfig, root: Path, folder: Path, trial_id: str, sweep: dict, started: float) -> dict:
    ctx = ray.get_runtime_context()
    node = f"{ray.util.get_node_ip_address()} ({ctx.get_node_id()[:8]})"
    device, placement = placement_device(ray.get_gpu_ids(), sweep.get("gpu_fallback") == "cpu", node)
    if placement["fallback"]:
        print(f"rcsweep: trial {trial_id}: {placement['fallback']}", file=sys.stderr)
    reset_peak_memory(device)
    timeout_s, constraints = sweep.get("trial_timeout_s"), parse_constraints(sweep.get("constraints"))
    energy = EnergySettings.from_dict(sweep.get("energy"))
    started_clock = time.monotonic()

    def report(stage: str, **metrics):
        if timeout_s is not None and time.monotonic() - started_clock > timeout_s:
            raise TrialTimeout(f"trial_timeout_s: still at stage {stage} after {timeout_s:g} s")
        # no Tune checkpoint: the trial resumes from its own stage checkpoints (_restore), and a
        # Tune checkpoint that its experiment state named but num_to_keep had deleted failed the
        # trial on resume after a SIGKILL (Tune saves that state at most every few seconds)
        tune.report({"stage": stage, **{k: v for k, v in metrics.items() if isinstance(v, _SCALARS)}})

    check_target(cfg)  # an unreachable compression target fails before pretraining
    data = load_trial_data(cfg, device=device)
    t = time.perf_counter()
    own = torch.get_num_threads()
    store = PretrainStore(root, cpus=sweep.get("cpus_per_trial", 1))
    threads_used = [own]

    def lend_threads():  # the CPUs of the trials waiting for this model (pretrain_resources)
        threads_used.append(store.threads(cfg, own, sweep.get("pretrain_cpus")))
        torch.set_num_threads(threads_used[-1])

    def on_epoch(s):
        lend_threads()
        report("pretrain", epoch=s.epoch + 1, val_clean_acc=s.val_clean_acc)

    def train():
        lend_threads()
        try:
            return pretrain(cfg, data, device, on_epoch)
        finally:
            torch.set_num_threads(own)

    model, info = store.model(cfg, train, device, who=trial_id, on_wait=lambda: report("waiting for pretraining"),
                              energy=energy)
    if info["trained_here"]:
        _log_stage(folder, "pretrain", key=pretrain_id(cfg), seconds=info["seconds"], threads=max(threads_used))
    resumed = _restore(folder)
    if resumed is None:
        # the pretraining's energy, as flops_pretrain: the whole training, whichever trial ran it
        progress, weights = Progress(times={"time_pretrain_s": time.perf_counter() - t},
                                     history={"pretrain": info["history"], "pretrained_model": pretrain_id(cfg)},
                                     energy={metric_name("pretrain"): info.get("energy_kwh")}), None
    else:
        progress, weights, path = resumed
        _log_stage(folder, "resume", from_stage=progress.stage, epochs_done=progress.finetune_epochs_done, source=str(path))
    es, objectives = sweep.get("early_stopping"), [tuple(o) for o in sweep.get("objectives") or ()]

    def on_stage(p: Progress, m):
        rung = at_rung(m, cfg, data, p, folder, es, objectives, device) if es else {}  # before the checkpoint
        step = 1 + p.finetune_epochs_done
        checkpoints.save(folder, step, p, m)
        _log_stage(folder, p.stage, epochs_done=p.finetune_epochs_done)
        last = (p.history.get("finetune") or [{}])[-1] if p.stage == "finetuning" else {}
        report(p.stage, epoch=p.finetune_epochs_done, val_clean_acc=last.get("val_clean_acc"), **rung)

    again = last_rung_report(folder, progress) if es and resumed is not None else {}
    if again:  # resumed from a rung's checkpoint: that rung's decision again
        report(progress.stage, **again)

    model, comp, record = continue_trial(model, cfg, data, device, progress, weights=weights, on_stage=on_stage,
                                         energy=energy)
    record["metrics"].update(screening_metrics(progress.history.get("screening", [])))
    apply_constraints(record, constraints)
    record["runtime"] = runtime_section(device, started, node=node,
                                        **{k: v for k, v in placement.items() if k != "device"})
    save_trial(folder, model, cfg, comp, record)
    _log_stage(folder, "evaluated")
    checkpoints.clear(folder)
    return record


def _restore(folder: Path):
    """The newest valid stage checkpoint of this trial (its own folder's; Tune holds none)."""
    return checkpoints.latest(folder)


def finished_record(folder: Path) -> dict | None:
    path = folder / "record.json"
    if not path.is_file() or not (folder / "model.json").is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a partial record cannot exist (atomic writes); treat as unfinished anyway


def final_metrics(record: dict) -> dict:
    """The trial's last report to Tune: the metrics a sweep can optimise (``sweepfile.METRICS``).
    The record and results.csv hold the rest; Tune keeps running statistics of every number it
    is sent, per trial, in the driver, so it is sent only what the searcher needs: the metrics and the
    flags (which decide what the sampler is told, :mod:`rcsweep.trial_status`)."""
    m = record["metrics"]
    return {"stage": "evaluated", "flags": m.get("flags") or "", **{k: m[k] for k in METRICS if k in m}}


def _log_stage(folder: Path, stage: str, **extra) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"stage": stage, "time": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
             "node": ray.get_runtime_context().get_node_id(), **extra}
    with open(folder / "stages.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
