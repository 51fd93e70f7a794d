"""Shared pretraining: each distinct pretraining configuration is trained once per sweep folder.

``DIR/pretrained/<key>/`` holds ``model.pt`` + ``model.json`` (the dense model, loaded like any
rcsweep model) and ``pretrain.json`` (the configuration key, the training history, seconds and
energy with its source (:mod:`rcsweep.energy`), which trial trained it), written last: its presence marks the model complete. ``<key>`` is a hash
of ``TrialConfig.pretrain_key()``. Every trial loads its model from there, so the store works
across Ray nodes (on shared storage) and after a resume; the driver holds no models.

A trial that needs a model that another trial is training waits for it: training happens under an
exclusive ``flock`` on ``DIR/pretrained/<key>.lock``. The kernel releases the lock when its holder
dies (a killed worker leaves no stale lock); on NFS, Linux serves ``flock`` through the NFS lock
manager. ``<key>/log.jsonl`` records every training started and finished, so tests and users can
check that each model was trained exactly once. A model whose checksum fails is set aside
(``<key>.corrupt-<time>``) and trained again.

**A shared pretraining uses the CPUs its waiters leave idle.** The trials waiting for a model hold
their Ray CPUs while they sleep on the lock. With ``pretrain_resources: {cpu: N}`` in the sweep file
the trial that trains the model runs up to N torch threads: its own CPUs plus those of the trials on
its host that wait for the same model (each waiter registers in ``<key>.waiting/`` while it waits),
re-counted after every epoch (:meth:`PretrainStore.threads`). This borrows what Ray has already
handed out instead of asking Ray for more: a separate pretraining task with N CPUs would wait for
CPUs that the waiting trials hold, and never start once trials fill the node. Waiters on other
hosts lend nothing (their cores are elsewhere); a waiter that died lends nothing (its pid is gone);
no more threads than the host's cores. It pays only where those cores are really idle: on a host
that other work keeps busy, torch's threads wait for each other at every operation (seen here: a
digits pretraining with 2 threads 10x slower than with 1 on a 2-core machine at load 12), so the
option is off unless the sweep file asks for it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ..checkpoint import load_model, save_model
from ..config import TrialConfig
from ..energy import EnergySettings, StageClock
from ..errors import CheckpointError, TrainingCollapsed, UserError
from ..fileio import atomic_write_json

STORE_DIR = "pretrained"
COLLAPSED_FILE = "collapsed.json"  # in a model's folder: its pretraining collapsed (retried on --retry-failed)


def pretrain_id(cfg: TrialConfig) -> str:
    """A stable 16-hex-digit name for ``cfg``'s pretraining configuration."""
    return hashlib.sha256(json.dumps(cfg.pretrain_key(), sort_keys=True).encode()).hexdigest()[:16]


def pretrained_models(source) -> list[Path]:
    """The complete pretrained models (``<key>/`` folders holding ``pretrain.json``) of ``source``:
    a sweep folder (its ``pretrained/``) or a ``pretrained/`` folder itself. Raises ``UserError``
    naming ``source`` when it holds none."""
    src = Path(source).expanduser()
    if not src.exists():
        raise UserError(f"--pretrained-from: {source} does not exist")
    store = src / STORE_DIR if (src / STORE_DIR).is_dir() else src
    found = sorted(d for d in store.glob("*") if d.is_dir() and _complete(d)) if store.is_dir() else []
    if not found:
        raise UserError(f"--pretrained-from: {source} holds no complete pretrained model "
                        f"(expected {STORE_DIR}/<key>/pretrain.json in a sweep folder)")
    return found


def seed_store(sweep_dir, source) -> list[str]:
    """Copy the complete pretrained models of ``source`` (see :func:`pretrained_models`) into the
    new sweep folder ``sweep_dir``'s store, so that trials whose pretraining configuration matches
    one of them load it instead of training it (``rcsweep run --pretrained-from``). Models are
    matched by their key (:func:`pretrain_id`), so a model no trial asks for is simply never used.
    Returns the keys copied; a key already in the store is kept as it is."""
    root = Path(sweep_dir) / STORE_DIR
    root.mkdir(parents=True, exist_ok=True)
    copied = []
    for folder in pretrained_models(source):
        if not (root / folder.name).exists():
            shutil.copytree(folder, root / folder.name)
            copied.append(folder.name)
    return copied


def dense_config(cfg: TrialConfig) -> TrialConfig:
    """The configuration stored with a pretrained model: the trial's, without compression or
    fine-tuning (so the saved model loads as the dense network it is)."""
    return cfg.replace(compression="none", finetune="none")


class PretrainStore:
    """The pretrained models of one sweep folder.

    Args:
        sweep_dir: the sweep folder; models live in ``sweep_dir/pretrained``.
        poll_s: seconds between attempts to take a busy lock (default 0.5).
        cpus: the CPUs the caller holds (its trial's ``resources.cpu``), lent to the trainer of the
            model it waits for (default 1).
    """

    def __init__(self, sweep_dir, poll_s: float = 0.5, cpus: float = 1.0):
        self.root = Path(sweep_dir) / STORE_DIR
        self.poll_s = poll_s
        self.cpus = cpus
        self.cores = len(os.sched_getaffinity(0))  # the most threads a pretraining here may run

    def folder(self, cfg: TrialConfig) -> Path:
        return self.root / pretrain_id(cfg)

    def model(self, cfg: TrialConfig, train: Callable[[], tuple], device="cpu", who: str = "",
              on_wait: Callable[[], None] | None = None, energy: EnergySettings | None = None):
        """``(model, info)``: the pretrained model for ``cfg``, trained here by ``train() -> (model,
        history)`` only if no trial has trained it. ``info`` is ``pretrain.json`` plus
        ``trained_here``. ``on_wait`` is called once if another trial holds the lock. ``energy``:
        the settings the training's energy is measured with."""
        folder = self.folder(cfg)
        _raise_if_collapsed(folder)
        if _complete(folder):
            try:
                return load_model(folder, device), {**_read(folder), "trained_here": False}
            except CheckpointError:
                pass  # set aside and retrained below, under the lock
        with self._lock(folder, on_wait):
            _raise_if_collapsed(folder)  # the trial that held the lock saw it collapse
            if _complete(folder):
                try:
                    return load_model(folder, device), {**_read(folder), "trained_here": False}
                except CheckpointError as e:
                    _log(folder, "corrupt", who, error=str(e))
                    folder.rename(folder.with_name(f"{folder.name}.corrupt-{int(time.time())}"))
            folder.mkdir(parents=True, exist_ok=True)
            _log(folder, "start", who)
            clock = StageClock(energy or EnergySettings())
            try:
                model, history = train()
            except TrainingCollapsed as e:  # deterministic: every trial sharing it would collapse again
                atomic_write_json(folder / COLLAPSED_FILE, {"error": str(e), "trained_by": who})
                _log(folder, "collapsed", who, error=str(e))
                raise
            seconds, kwh = clock.read()
            save_model(model, folder, dense_config(cfg), {"compression": {"method": "none"}})
            info = {"key": cfg.pretrain_key(), "seconds": seconds, "energy_kwh": kwh,
                    "energy_source": clock.source, "trained_by": who,
                    "history": [vars(h) if not isinstance(h, dict) else h for h in history]}
            atomic_write_json(folder / "pretrain.json", info)
            _log(folder, "done", who, seconds=seconds)
            return model, {**info, "trained_here": True}

    def threads(self, cfg: TrialConfig, own: int, cap: float | None) -> int:
        """Torch threads for training ``cfg``'s model here: ``own`` plus the CPUs of the live trials
        on this host waiting for it, at most ``cap`` (``pretrain_resources.cpu``; None: ``own``) and
        at most ``self.cores`` (this process's CPUs)."""
        if cap is None:
            return own
        host, lent = socket.gethostname(), 0.0
        for path in self._waiting(cfg).glob("*.json"):
            try:
                w = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # being written or removed
            if w.get("host") == host and _alive(w.get("pid")):
                lent += w.get("cpus", 0)
        return max(own, min(int(cap), int(own + lent), self.cores))

    def _waiting(self, cfg_or_folder) -> Path:
        folder = cfg_or_folder if isinstance(cfg_or_folder, Path) else self.folder(cfg_or_folder)
        return folder.with_name(folder.name + ".waiting")

    @contextmanager
    def _lock(self, folder: Path, on_wait):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(folder.with_name(folder.name + ".lock"), "a+") as f:
            waiting = None
            try:
                while True:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if waiting is None:
                            waiting = self._register_waiter(folder)
                            if on_wait is not None:
                                on_wait()
                        time.sleep(self.poll_s)
            finally:
                if waiting is not None:
                    waiting.unlink(missing_ok=True)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _register_waiter(self, folder: Path) -> Path:
        """Say, while waiting, that this process's CPUs are idle (:meth:`threads` counts them)."""
        path = self._waiting(folder) / f"{socket.gethostname()}-{os.getpid()}-{time.monotonic_ns()}.json"
        atomic_write_json(path, {"host": socket.gethostname(), "pid": os.getpid(), "cpus": self.cpus})
        return path


def count_trainings(sweep_dir) -> dict[str, int]:
    """``{key: number of completed trainings}`` for every model in the sweep's store."""
    root = Path(sweep_dir) / STORE_DIR
    counts = {}
    for log in sorted(root.glob("*/log.jsonl")):
        if "." in log.parent.name:  # a corrupt model set aside
            continue
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        counts[log.parent.name] = sum(e["event"] == "done" for e in events)
    return counts


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _raise_if_collapsed(folder: Path) -> None:
    """TrainingCollapsed when the pretraining in ``folder`` collapsed before (its ``collapsed.json``)."""
    try:
        seen = json.loads((folder / COLLAPSED_FILE).read_text())
    except (OSError, ValueError):
        return
    raise TrainingCollapsed(f"{seen.get('error')} (the shared pretraining collapsed in trial "
                            f"{seen.get('trained_by') or '?'}; not trained again: resume with --retry-failed to retry it)")


def _complete(folder: Path) -> bool:
    return (folder / "pretrain.json").is_file()


def _read(folder: Path) -> dict:
    return json.loads((folder / "pretrain.json").read_text())


def _log(folder: Path, event: str, who: str, **extra) -> None:
    entry = {"event": event, "trial": who, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
             **extra}
    with open(folder / "log.jsonl", "a") as f:  # one short O_APPEND write per line
        f.write(json.dumps(entry) + "\n")
