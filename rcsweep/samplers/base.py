"""The sampler contract: how a sweep's Optuna study chooses the next configuration.

A sampler is one module holding a :class:`Sampler` subclass and its own frozen options dataclass
(a :class:`SamplerOptions`), registered by one line in ``__init__``. The sweep file chooses it
(``search: {sampler: tpe, n_startup_trials: 6}``); the sweep-file schema validates the options
from the dataclass (names, types, ranges), and the contract suite
(``tests/test_samplers_contract.py``) runs every registered sampler.

rcsweep drives the study itself (:mod:`rcsweep.sweep.search`: ask/tell, references, repeats,
constraints, a journal file), so a sampler only has to build an Optuna sampler for a budget. The
options' defaults suit small budgets: each sampler sizes what it can from the
:class:`SamplerContext` (the sweep's trial budget, its references) when an option is left unset.

Sampler modules import Optuna inside :meth:`Sampler.build`, not at the top: the sweep-file schema
(and so ``rcsweep validate``) reads their options classes and stays light.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Optional

from ..errors import ConfigError


def option(default: Any, lo: Optional[float] = None, hi: Optional[float] = None, doc: str = "") -> Any:
    """An options field: ``default`` (None: sized from the budget), the closed range ``[lo, hi]``
    a number must lie in, and what it means."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True)
class SamplerOptions:
    """Base of a sampler's options: validates types and ranges on construction.

    ``ConfigError.field`` is the option's name (the sweep-file schema prefixes ``search.``)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            want = _base_type(f)
            if want is bool:
                if not isinstance(value, bool):
                    raise ConfigError(f.name, f"expected true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f.name, f"expected {'an integer' if want is int else 'a number'}, got {value!r}")
            if not math.isfinite(value):  # nan passes every range check
                raise ConfigError(f.name, f"must be finite, got {value!r}")
            if want is int and not float(value).is_integer():
                raise ConfigError(f.name, f"expected an integer, got {value!r}")
            if want is int:
                object.__setattr__(self, f.name, int(value))
            lo, hi = f.metadata.get("range", (None, None))
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(f.name, f"must be in [{lo if lo is not None else '-inf'}, "
                                          f"{hi if hi is not None else 'inf'}], got {value!r}")

    def to_dict(self) -> dict:
        """The options that differ from their defaults (what the sweep file needs to say)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}


def _base_type(f: dataclasses.Field) -> type:
    t = str(f.type)
    return bool if "bool" in t else int if "int" in t else float


@dataclass(frozen=True)
class NoOptions(SamplerOptions):
    """For samplers without options of their own."""


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may size itself by.

    Args:
        seed: the sweep's ``search_seed`` (plus the trials already in the study on a resume, so a
            rebuilt sampler does not replay its first draws).
        num_samples: the sweep's trial budget, references included.
        n_references: reference trials (run first, then told to the study as completed trials).
        n_objectives: the sweep's objectives.
        known: objectives known before a trial trains (their index -> the searched parameters their
            value follows from: a size from the compression parameters), for samplers that use them.
        applicable: maps a study trial's parameters to those that apply to it (the conditional
            space: ``sparsity`` only when pruning); None: all of them.
        measure: measures the ``known`` objectives of a study trial's parameters without training
            (``{objective index: value as the study is told it}``, {} where it cannot; a size from an
            untrained compressed copy); None: they are learnt from the trials that ran.
    """
    seed: int
    num_samples: int
    n_references: int = 0
    n_objectives: int = 2
    known: Mapping[int, tuple] = dataclasses.field(default_factory=dict)
    applicable: Optional[Callable[[dict], dict]] = None
    measure: Optional[Callable[[dict], Mapping[int, float]]] = None


class Sampler:
    """A search strategy over the sweep's conditional space. Subclasses set ``name``, ``Params``,
    ``summary`` and implement :meth:`build`; a sampler that enumerates a finite space in a fixed
    order also sets ``enumerates``."""

    name: ClassVar[str] = "sampler"
    Params: ClassVar[type] = NoOptions
    summary: ClassVar[str] = ""
    #: True: the sweep enqueues every point of its (finite) space in order and the sampler only
    #: fills in what was not enqueued (``search: grid``)
    enumerates: ClassVar[bool] = False

    def __init__(self, options: SamplerOptions | None = None):
        self.options = options if options is not None else self.Params()

    def build(self, ctx: SamplerContext):
        """The ``optuna.samplers.BaseSampler`` for a sweep described by ``ctx``."""
        raise NotImplementedError

    def startup(self, ctx: SamplerContext) -> int:
        """How many trials (references counted) the sampler draws at random before its model takes
        over; 0 (the default) for a sampler without a model-free start. It samples at random until
        that many are *complete*, so while a reference among them still runs the searcher issues no
        further suggestion (:mod:`rcsweep.sweep.search`): one issued then would be one more random draw."""
        return 0

    def __repr__(self):
        return f"{type(self).__name__}({self.options})"


def startup_trials(ctx: SamplerContext, share: float = 0.15, low: int = 3, high: int = 10) -> int:
    """Random trials before a model-based sampler takes over, counting the references (which the
    study holds as completed trials): ``clip(round(share * num_samples), references + low, high)``.
    Optuna's TPE default is 10 whatever the budget, a third of a 30-trial sweep spent at random."""
    return int(min(max(round(share * ctx.num_samples), ctx.n_references + low), max(high, ctx.n_references + low)))
