"""A trial's stage checkpoints: ``DIR/trials/<id>/checkpoints/<NNNN>-<stage>/``.

Each holds ``progress.json`` (:class:`rcsweep.pipeline.Progress` plus the sha256 of the weights)
and ``weights.pt`` (the compressed model's state_dict), and after a fine-tuning epoch
``train_state.pt`` (the optimiser's and torch's random state, :func:`rcsweep.train.train_state`, its
sha256 in ``progress.json`` too), so that a resumed trial ends exactly as an uninterrupted one. A
checkpoint is written into a temporary folder and renamed into place, so it is either whole or
absent; reading verifies the checksums and loads with ``weights_only=True``. :func:`latest` returns the newest checkpoint that passes, so a
truncated or altered one costs one step, not the trial. The last ``KEEP`` are kept.

They are the only checkpoints of a trial: none is handed to Ray Tune, which restarts an unfinished
trial from the start, where the trainable finds them (:mod:`.trainable`). Tune's own copy was
written twice over, and on a resume after a SIGKILL Tune could name one that its ``num_to_keep``
had already deleted (its experiment state is saved every few seconds), failing the trial.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import torch

from ..checkpoint import load_state_dict, load_verified
from ..errors import CheckpointError
from ..fileio import atomic_write_bytes, atomic_write_json, sha256_file
from ..pipeline import Progress

KEEP = 2
TRAIN_STATE = "train_state.pt"


def save(folder, step: int, progress: Progress, model: torch.nn.Module) -> Path:
    """Write checkpoint ``step`` (higher is later) of a trial whose folder is ``folder``."""
    root = Path(folder) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    meta = {"step": step, "sha256": _write(tmp / "weights.pt", model.state_dict()),
            "progress": {f.name: getattr(progress, f.name) for f in fields(progress) if f.name != "train_state"}}
    if progress.train_state is not None:
        meta["train_state_sha256"] = _write(tmp / TRAIN_STATE, progress.train_state)
    atomic_write_json(tmp / "progress.json", meta)
    final = root / f"{step:04d}-{progress.stage}"
    if final.exists():  # a step redone after a restart from an older checkpoint
        shutil.rmtree(final)
    tmp.rename(final)
    for old in sorted(_steps(root))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(folder) -> tuple[Progress, dict, Path] | None:
    """``(progress, weights, path)`` of the newest valid checkpoint of the trial in ``folder``, or
    None if there is none."""
    for path in sorted(_steps(Path(folder) / "checkpoints"), reverse=True):
        try:
            meta = json.loads((path / "progress.json").read_text())
            weights = load_state_dict(path / "weights.pt", meta["sha256"])
            progress = Progress(**meta["progress"])
            if meta.get("train_state_sha256"):
                progress.train_state = _load_train_state(path / TRAIN_STATE, meta["train_state_sha256"])
            return progress, weights, path
        except (OSError, ValueError, KeyError, TypeError, CheckpointError) as e:
            print(f"rcsweep: skipping checkpoint {path}: {e}", file=sys.stderr)
    return None


def _write(path: Path, obj) -> str:
    """``torch.save`` of ``obj`` (its tensors on the CPU) to ``path``, atomically; its sha256."""
    buf = io.BytesIO()
    torch.save(_to_cpu(obj), buf)
    atomic_write_bytes(path, buf.getvalue())
    return sha256_file(path)


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x


def _load_train_state(pt: Path, sha256: str) -> dict:
    """Checksum-verified, pickle-free load of a ``train_state.pt``."""
    state = load_verified(pt, sha256)
    if not isinstance(state, dict) or "optimizer" not in state or not isinstance(state.get("rng"), torch.Tensor):
        raise CheckpointError(f"{pt} does not hold a training state")
    return state


def clear(folder) -> None:
    """Remove a finished trial's stage checkpoints (its record and model are what remain)."""
    shutil.rmtree(Path(folder) / "checkpoints", ignore_errors=True)


def _steps(root: Path) -> list[Path]:
    return [p for p in root.glob("[0-9][0-9][0-9][0-9]-*") if p.is_dir()] if root.is_dir() else []
