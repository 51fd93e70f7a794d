"""rcsweep: sweeps that make neural networks small and robust.

Stages (no Ray): :func:`load_dataset`, models, attacks, :func:`run_trial`; saved models load with
:func:`load_model`. The sweep layer (:func:`run_sweep`, :func:`load_results`) imports Ray lazily.
"""
__version__ = "0.1.0"

from .checkpoint import load_model, save_model  # noqa: E402
from .config import TrialConfig  # noqa: E402
from .data import load_dataset  # noqa: E402
from .errors import UserError  # noqa: E402
from .pipeline import run_trial  # noqa: E402


def run_sweep(*args, **kwargs):
    from .sweep.runner import run_sweep as _run

    return _run(*args, **kwargs)


def load_results(*args, **kwargs):
    from .results import load_results as _load

    return _load(*args, **kwargs)


__all__ = ["TrialConfig", "UserError", "load_dataset", "load_model", "load_results", "run_sweep", "run_trial",
           "save_model"]
