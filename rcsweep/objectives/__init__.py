"""Training objectives, one module each; ``OBJECTIVES`` maps a configuration name to its class.

A new objective is one module (an :class:`Objective` with its parameter dataclass) and one
registration line here; the trial configuration, the sweep-file rules and the contract tests
(``tests/test_objectives_contract.py``) pick it up from this registry.
"""
from ..registry import Registry
from .base import NoParams, Objective, ObjectiveParams, param, param_fields
from .fast_at import FastAT
from .mart import MART
from .pgd import PGDAT
from .standard import Standard
from .trades import TRADES

OBJECTIVES: Registry = Registry("training objective")
OBJECTIVES.register("standard")(Standard)
OBJECTIVES.register("adversarial")(PGDAT)
OBJECTIVES.register("trades")(TRADES)
OBJECTIVES.register("mart")(MART)
OBJECTIVES.register("fast_at")(FastAT)

__all__ = ["NoParams", "OBJECTIVES", "Objective", "ObjectiveParams", "param", "param_fields"]
