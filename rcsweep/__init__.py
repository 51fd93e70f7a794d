"""rcsweep: sweeps that make neural networks small and robust.

Stages (no Ray): :func:`load_dataset`, models, attacks, :func:`run_trial`; saved models load with
:func:`load_model`. The sweep layer (:func:`run_sweep`, :func:`load_results`) imports Ray lazily.
Everything is imported on first use, so ``import rcsweep`` (and ``rcsweep --help``) stays fast.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {"TrialConfig": "config", "UserError": "errors", "load_dataset": "data", "load_model": "checkpoint",
         "save_model": "checkpoint", "run_trial": "pipeline", "load_results": "results", "run_sweep": "sweep.runner"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rcsweep' has no attribute {name!r}")


__all__ = sorted(_LAZY)
