"""Samplers, one module each; ``SAMPLERS`` maps a sweep file's ``search: {sampler: NAME}`` to its class.

A new sampler is one module (a :class:`Sampler` with its options dataclass) and one registration
line here; the sweep-file schema and the contract tests (``tests/test_samplers_contract.py``) pick
it up from this registry. ``DEFAULT`` is the sampler of ``search: optuna`` (the default search),
chosen by the benchmark in docs/results/search.
"""
from ..registry import Registry
from .base import NoOptions, Sampler, SamplerContext, SamplerOptions, option, startup_trials
from .gp import GP
from .grid import Grid
from .nsga2 import NSGA2
from .random import Random
from .tpe import TPE
from .tpe_front import TPEFront

SAMPLERS: Registry = Registry("sampler")
SAMPLERS.register("tpe")(TPE)
SAMPLERS.register("tpe_front")(TPEFront)
SAMPLERS.register("nsga2")(NSGA2)
SAMPLERS.register("gp")(GP)
SAMPLERS.register("random")(Random)
SAMPLERS.register("grid")(Grid)

DEFAULT = "tpe_front"
#: the older one-word ``search:`` values and the sampler each means
ALIASES = {"optuna": DEFAULT, "random": "random", "grid": "grid"}

__all__ = ["ALIASES", "DEFAULT", "NoOptions", "SAMPLERS", "Sampler", "SamplerContext", "SamplerOptions", "option",
           "startup_trials"]
