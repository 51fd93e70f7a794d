"""The methods a trial names and the trial parameters that depend on them, read from the registries.

A trial chooses three methods: ``pretrain`` and ``finetune`` (training objectives,
:data:`rcsweep.objectives.OBJECTIVES`) and ``compression`` (:data:`rcsweep.compress_params.COMPRESSION_METHODS`).
Each plug-in's parameter dataclass becomes trial parameters: a compression parameter under its own
name (``sparsity``, ``weight_bits``: shared by the methods that take it), an objective's as
``<objective>_<field>`` (``trades_beta``). :data:`RULES` says, for every parameter that depends on
the methods, when it applies; :class:`~rcsweep.config.TrialConfig`'s validation and defaults,
:func:`applicable`, the sweep-file checks and the conditional search space all read it, so that a
new compressor or objective needs no change here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ..compress_params import COMPRESSION_METHODS, trial_params
from ..objectives import OBJECTIVES, param_fields

# `pretrain` takes the objectives' registry names (standard, adversarial = PGD-AT, trades, ...);
# `finetune` takes none, clean (the standard objective) and the rest
_EXTRA_OBJECTIVES = tuple(n for n in OBJECTIVES.names() if n not in ("standard", "adversarial"))
PRETRAIN = ("standard", "adversarial") + _EXTRA_OBJECTIVES
FINETUNE = ("none", "clean", "adversarial") + _EXTRA_OBJECTIVES
COMPRESSION = ("none",) + tuple(COMPRESSION_METHODS.in_order())
#: the fields that choose methods, with the value a trial has when it does not give one
METHOD_DEFAULTS = {"pretrain": "standard", "compression": "none", "finetune": "none"}


def objective_name(stage_value: str) -> str:
    """The objectives-registry name of a ``pretrain`` or ``finetune`` value (``clean`` -> ``standard``)."""
    return "standard" if stage_value == "clean" else stage_value


def is_adversarial(stage_value: str) -> bool:
    """Whether a ``pretrain``/``finetune`` value trains on perturbed inputs (so its epsilon applies)."""
    name = objective_name(stage_value)
    return name in OBJECTIVES.names() and OBJECTIVES.get(name).adversarial


#: every compression parameter as a trial parameter: name -> (its field, the methods that take it)
COMPRESSION_PARAMS: dict[str, tuple[dataclasses.Field, tuple[str, ...]]] = trial_params()
#: every objective parameter as a trial parameter: ``<objective>_<field>`` -> (objective, field)
OBJECTIVE_PARAMS: dict[str, tuple[str, dataclasses.Field]] = {
    f"{name}_{f.name}": (name, f) for name in OBJECTIVES.names() for f in param_fields(OBJECTIVES.get(name))}
#: every plug-in parameter (compression, then objectives): trial name -> its declared field
METHOD_PARAMS: dict[str, dataclasses.Field] = {**{n: f for n, (f, _) in COMPRESSION_PARAMS.items()},
                                               **{n: f for n, (_, f) in OBJECTIVE_PARAMS.items()}}


@dataclass(frozen=True)
class AppliesWhen:
    """When a method-dependent trial parameter applies.

    Args:
        keys: the method fields that decide it (``("compression",)``).
        test: ``(pretrain, compression, finetune) -> bool``.
        needs: what it needs, for errors ("compression prune, prune_quant").
        example: methods under which it applies, to check one of its values on its own.
    """

    keys: tuple[str, ...]
    test: Callable[[str, str, str], bool]
    needs: str
    example: dict


def _compression(methods: tuple[str, ...]) -> AppliesWhen:
    return AppliesWhen(("compression",), lambda p, c, f: c in methods, f"compression {', '.join(methods)}",
                       {"compression": methods[0]})


def _objective(objective: str) -> AppliesWhen:
    return AppliesWhen(("pretrain", "finetune"), lambda p, c, f: objective in (p, objective_name(f)),
                       f"pretrain or finetune: {objective}", {"pretrain": objective})


_ADV_PRETRAIN = AppliesWhen(("pretrain",), lambda p, c, f: is_adversarial(p),
                            "an adversarial pretrain (adversarial, trades, ...)", {"pretrain": "adversarial"})
_FINETUNE = AppliesWhen(("finetune",), lambda p, c, f: f != "none", "a finetune other than none", {"finetune": "clean"})
_ADV_FINETUNE = AppliesWhen(("finetune",), lambda p, c, f: is_adversarial(f),
                            "an adversarial finetune (adversarial, trades, ...)", {"finetune": "adversarial"})

#: every parameter that applies to some methods only -> when it does
RULES: dict[str, AppliesWhen] = {
    "eps_pretrain": _ADV_PRETRAIN, "eps_ramp_epochs": _ADV_PRETRAIN,
    **{name: _compression(methods) for name, (_, methods) in COMPRESSION_PARAMS.items()},
    "finetune_epochs": _FINETUNE, "finetune_lr": _FINETUNE, "eps_finetune": _ADV_FINETUNE,
    **{name: _objective(objective) for name, (objective, _) in OBJECTIVE_PARAMS.items()}}


def applicable(name: str, params: dict[str, Any]) -> bool:
    """Whether parameter ``name`` applies given the method choices in ``params`` (missing: defaults)."""
    rule = RULES.get(name)
    return rule is None or rule.test(*(params.get(k, d) for k, d in METHOD_DEFAULTS.items()))


def with_method_params(cls):
    """Adds an ``Optional`` field per plug-in parameter, ``None`` unless its method is chosen (then
    its default): compression parameters right after ``compression`` (the order of record.json and
    results.csv columns), objective parameters last."""
    ann = cls.__annotations__
    fields = list(ann.items())
    ann.clear()
    for name, typ in fields:
        ann[name] = typ
        if name == "compression":
            ann.update((n, _optional(f)) for n, (f, _) in COMPRESSION_PARAMS.items())
    ann.update((n, _optional(f)) for n, (_, f) in OBJECTIVE_PARAMS.items())
    for name in METHOD_PARAMS:
        setattr(cls, name, None)
    return cls


def _optional(f: dataclasses.Field) -> str:
    return f"Optional[{type(f.default).__name__}]"
