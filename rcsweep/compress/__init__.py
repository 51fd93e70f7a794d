"""Compression stage: ``compress_(model, cfg, calib, device)`` changes a model in place.

Interface used by the pipeline and by :func:`rcsweep.load_model`:

- ``compress_(model, cfg, calib=(x_val, y_val), device) -> Compression``: applies
  ``cfg.compression``; the returned handle's ``enforce()`` is called after every optimiser step of
  fine-tuning so masks and quantisation grids stay in force, and ``info`` (a JSON-able dict) is
  stored in ``model.json`` under ``"compression"``.
- ``restore_structure_(model, cfg, info)``: gives a freshly built dense model the compressed
  structure (channel counts, masks, quantizers) so that a saved state_dict loads into it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..config import TrialConfig
from ..errors import UserError


@dataclass
class Compression:
    info: dict = field(default_factory=dict)

    def enforce(self) -> None:
        """Re-apply constraints after an optimiser step (no-op for dense models)."""


def compress_(model: nn.Module, cfg: TrialConfig, calib=None, device="cpu") -> Compression:
    if cfg.compression == "none":
        return Compression({"method": "none"})
    raise UserError(f"compression: {cfg.compression!r} is not yet supported")


def restore_structure_(model: nn.Module, cfg: TrialConfig, info: dict) -> None:
    if cfg.compression != "none":
        raise UserError(f"compression: {cfg.compression!r} is not yet supported")
