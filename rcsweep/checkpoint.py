"""Model files: ``model.pt`` (a state_dict, loaded with ``weights_only=True``) and ``model.json``
(dataset, model, trial configuration, library versions, sha256 of ``model.pt``).

:func:`load_model` rebuilds the architecture from ``model.json`` (including the compressed
structure: removed channels, pruning masks, quantizers), verifies the checksum *before* loading,
and never unpickles arbitrary objects. It returns a plain, frozen ``nn.Module`` ([0, 1] images ->
logits) that is the model that was evaluated: pruning masks baked into its weights, quantized weights
on their grid, activation ranges that no call moves (:func:`rcsweep.compress.freeze_`). The file
format is unchanged: ``model.pt`` holds the pipeline's state_dict (``weight_orig`` / ``weight_mask``
for unstructured pruning), so files written by earlier versions load the same way.
"""
from __future__ import annotations

import io
import json
import platform
from pathlib import Path

import torch
from torch import nn

from .config import SCHEMA_VERSION, TrialConfig
from .errors import CheckpointError, UserError
from .fileio import atomic_write_bytes, atomic_write_json, sha256_file

MODEL_FORMAT = "rcsweep-model"


def library_versions() -> dict:
    import numpy

    from . import __version__

    return {"rcsweep": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def save_model(model: nn.Module, folder, cfg: TrialConfig, extra: dict | None = None) -> Path:
    """Write ``folder/model.pt`` then ``folder/model.json`` atomically; returns the .pt path."""
    folder = Path(folder)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    pt = folder / "model.pt"
    atomic_write_bytes(pt, buf.getvalue())
    meta = {"format": MODEL_FORMAT, "schema_version": SCHEMA_VERSION, "dataset": cfg.dataset, "model": cfg.model,
            "width": cfg.width, "config": cfg.to_flat(), "versions": library_versions(),
            "sha256": sha256_file(pt), "input": "images in [0, 1], shape (N, C, H, W); output: logits"}
    if extra:
        meta.update(extra)
    atomic_write_json(folder / "model.json", meta)
    return pt


def read_meta(path) -> tuple[Path, dict]:
    """(path of model.pt, parsed model.json) for a folder, a model.pt or a model.json path."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    pt, js = folder / "model.pt", folder / "model.json"
    if not pt.is_file() or not js.is_file():
        raise CheckpointError(f"no model at {path}: expected model.pt and model.json in {folder}")
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{js} is not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{js} is not a rcsweep model description")
    if meta.get("schema_version", 0) > SCHEMA_VERSION:
        raise CheckpointError(f"{js} has schema_version {meta['schema_version']}; this rcsweep reads <= {SCHEMA_VERSION}")
    return pt, meta


def load_verified(pt: Path, sha256: str | None):
    """Checksum-verified, pickle-free (``weights_only=True``) load of a torch file, on the CPU.
    Raises CheckpointError for a mismatching checksum or a file that cannot be loaded safely."""
    if sha256 is not None and sha256_file(pt) != sha256:
        raise CheckpointError(f"{pt} is corrupted or was altered: its sha256 does not match the recorded one")
    try:
        return torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for pickled objects, RuntimeError for truncation
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise CheckpointError(f"cannot load {pt} safely: {msg[:200]}") from None


def load_state_dict(pt: Path, sha256: str | None) -> dict:
    """Checksum-verified, pickle-free (``weights_only=True``) load of a state_dict file."""
    state = load_verified(pt, sha256)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{pt} does not hold a state_dict of tensors")
    return state


def load_model(path, device="cpu") -> nn.Module:
    """Load a saved rcsweep model (folder, model.pt or model.json) on ``device``.

    Returns a plain, frozen ``nn.Module`` in eval mode: images (N, C, H, W) in [0, 1] -> logits
    (N, classes). Compression is kept and made plain: removed channels stay removed, pruned weights
    are zeros in ``.weight`` (no ``weight_orig`` / ``weight_mask``), quantized layers hold on-grid
    weights and fixed activation ranges (train mode moves none); its outputs are those of the model
    the trial evaluated. Parameters keep ``requires_grad`` (a loaded dense model can be trained on).

    Raises CheckpointError for a missing, corrupted, altered, pickled or mismatching file."""
    from .compress import freeze_, restore_structure_
    from .models import build_model

    pt, meta = read_meta(path)
    try:
        cfg = TrialConfig.from_flat(meta["config"])
    except (UserError, KeyError, TypeError) as e:
        raise CheckpointError(f"{pt.parent / 'model.json'} has an invalid configuration: {e}") from None
    state = load_state_dict(pt, meta.get("sha256"))
    model = build_model(cfg.model, cfg.dataset, cfg.width)
    restore_structure_(model, cfg, meta.get("compression", {}))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{pt} does not match its model.json architecture: {str(e).splitlines()[0][:200]}") from None
    return freeze_(model).to(device)
