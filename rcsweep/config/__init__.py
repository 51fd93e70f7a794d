"""The trial configuration: one frozen, self-validating dataclass.

``TrialConfig.from_flat`` / ``TrialConfig.to_flat`` are the *only* conversion between the flat
dict that Ray, YAML files, ``--set`` and result tables use and the typed config. Every error
names the offending field.

Units: images are in [0, 1]; every epsilon is in pixel units of that range (``8/255``), for the
norm given by ``norm``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ConfigError, did_you_mean
from ..metrics_table import missing
from ..method_params import check
from ..objectives import OBJECTIVES, Objective, param_fields
from .methods import (COMPRESSION, COMPRESSION_PARAMS, FINETUNE, METHOD_PARAMS, OBJECTIVE_PARAMS, PRETRAIN, RULES,
                      applicable, is_adversarial, objective_name, with_method_params)
from .values import coerce, one_of, parse_number, positive

_did_you_mean = did_you_mean  # its former name here

__all__ = ["COMPRESSION", "COMPRESSION_PARAMS", "FIELD_NAMES", "FIELD_TYPES", "FINETUNE", "LR_SCHEDULE",
           "METHOD_PARAMS", "NORM", "OBJECTIVE_PARAMS", "PRETRAIN", "RULES", "SCHEMA_VERSION", "TrialConfig",
           "applicable", "objective_name", "parse_number"]

SCHEMA_VERSION = 1
NORM = ("linf", "l2")
LR_SCHEDULE = ("cosine", "step", "constant")
PRECISION = ("fp32", "bf16")  # training (and its attack) in float32, or under bf16 autocast (rcsweep.device)


@dataclass(frozen=True)
@with_method_params
class TrialConfig:
    """Every parameter of one trial: pretrain -> compress -> fine-tune -> evaluate.

    Parameters that do not apply to the chosen methods are ``None`` (for example ``sparsity``
    without pruning); giving them a value is an error. The plug-ins' own parameters are added from
    their parameter classes (:mod:`.methods`): the compression methods' (``sparsity``,
    ``weight_bits``, ... :mod:`rcsweep.compress_params`) right after ``compression``, the training
    objectives' (``trades_beta``, ...) after every field below.
    """

    # data and model
    dataset: str = "digits"
    model: Optional[str] = None  # None: the dataset's default model
    width: float = 1.0  # channel multiplier for CPU budgets
    seed: int = 0
    train_size: Optional[int] = None  # None: the whole training pool (minus val)
    val_size: Optional[int] = None  # None: 10% of the training pool, at most 5000
    test_size: Optional[int] = None  # None: the whole test split
    batch_size: int = 128
    # optimisation
    lr: float = 0.05
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    precision: str = "fp32"  # fp32 | bf16: autocast of training and its attack; evaluation stays float32
    # threat model
    norm: str = "linf"
    eps_eval: float = 0.1
    eps_curve: tuple = ()
    attack_steps: int = 10  # PGD steps used in adversarial training / fine-tuning
    eval_steps: int = 20
    eval_restarts: int = 2
    eval_targets: int = 0  # k >= 1: APGD-T on k target classes instead of APGD-DLR
    # stage 1: pretraining
    pretrain: str = "standard"
    pretrain_epochs: int = 10
    eps_pretrain: Optional[float] = None  # None: eps_eval (adversarial pretraining only)
    eps_ramp_epochs: Optional[int] = None  # None: half of pretrain_epochs (adversarial only)
    # stage 2: compression
    compression: str = "none"  # its parameters follow (rcsweep.compress_params)
    # stage 3: fine-tuning
    finetune: str = "none"
    finetune_epochs: Optional[int] = None
    finetune_lr: Optional[float] = None  # None: lr / 5
    eps_finetune: Optional[float] = None  # None: eps_eval (adversarial fine-tuning only)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, coerce(f.name, getattr(self, f.name), f.type))
        self._validate()
        self._fill_defaults()

    # -- validation -------------------------------------------------------------------------
    def _validate(self):
        one_of("pretrain", self.pretrain, PRETRAIN)
        one_of("compression", self.compression, COMPRESSION)
        one_of("finetune", self.finetune, FINETUNE)
        one_of("norm", self.norm, NORM)
        one_of("lr_schedule", self.lr_schedule, LR_SCHEDULE)
        one_of("precision", self.precision, PRECISION)
        positive("width", self.width)
        positive("batch_size", self.batch_size)
        positive("lr", self.lr)
        positive("attack_steps", self.attack_steps)
        positive("eval_steps", self.eval_steps)
        positive("eval_restarts", self.eval_restarts)
        for name in ("train_size", "val_size", "test_size"):
            if getattr(self, name) is not None:
                positive(name, getattr(self, name))
        if self.seed < 0:
            raise ConfigError("seed", f"must be >= 0, got {self.seed}")
        if self.eval_targets < 0:
            raise ConfigError("eval_targets", f"must be >= 0, got {self.eval_targets}")
        if self.pretrain_epochs < 0:
            raise ConfigError("pretrain_epochs", f"must be >= 0, got {self.pretrain_epochs}")
        if not 0 <= self.momentum < 1:
            raise ConfigError("momentum", f"must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", f"must be >= 0, got {self.weight_decay}")
        self._check_eps("eps_eval", self.eps_eval)
        for e in self.eps_curve:
            self._check_eps("eps_curve", e)
        # parameters that only apply to some methods, then their values
        for name, rule in RULES.items():
            if getattr(self, name) is not None and not self._applies(name):
                raise ConfigError(name, f"only applies with {rule.needs} (got pretrain={self.pretrain}, "
                                        f"compression={self.compression}, finetune={self.finetune})")
        if self.eps_pretrain is not None:
            self._check_eps("eps_pretrain", self.eps_pretrain)
        if self.eps_ramp_epochs is not None and self.eps_ramp_epochs < 0:
            raise ConfigError("eps_ramp_epochs", f"must be >= 0, got {self.eps_ramp_epochs}")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise ConfigError("finetune_epochs", f"must be >= 0, got {self.finetune_epochs}")
        if self.finetune_lr is not None:
            positive("finetune_lr", self.finetune_lr)
        if self.eps_finetune is not None:
            self._check_eps("eps_finetune", self.eps_finetune)
        for name, f in METHOD_PARAMS.items():
            if getattr(self, name) is not None:
                check(name, f, getattr(self, name))

    def _applies(self, name: str) -> bool:
        """Whether method-dependent parameter ``name`` applies to this trial's methods (:data:`RULES`)."""
        return RULES[name].test(self.pretrain, self.compression, self.finetune)

    def objective(self, stage: str) -> Objective:
        """The objective of ``stage`` (``pretrain`` or ``finetune``, not ``none``) with this trial's parameters."""
        name = objective_name(getattr(self, stage))
        cls = OBJECTIVES.get(name)
        return cls(cls.Params(**{f.name: getattr(self, f"{name}_{f.name}") for f in param_fields(cls)}))

    def _check_eps(self, name: str, eps: float):
        if eps < 0 or (self.norm == "linf" and eps > 1):
            raise ConfigError(name, f"epsilon {eps} is outside [0, 1] (L-inf, pixel units of [0, 1] images)"
                              if self.norm == "linf" else f"epsilon {eps} must be >= 0")

    def _fill_defaults(self):
        """Fill method-dependent defaults, so that the record shows what actually ran."""
        s = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        if self.model is None:
            from ..data import default_model  # local: config must not import torch at import time

            s("model", default_model(self.dataset))
        from ..models import MODELS

        if self.model not in MODELS:
            raise ConfigError("model", f"unknown model {self.model!r}; known: {', '.join(MODELS.names())} "
                                       "(or a 'package.module:factory' path)" + did_you_mean(self.model, MODELS.names()))
        if is_adversarial(self.pretrain):
            if self.eps_pretrain is None:
                s("eps_pretrain", self.eps_eval)
            if self.eps_ramp_epochs is None:
                s("eps_ramp_epochs", self.pretrain_epochs // 2)
        if self.finetune != "none":
            if self.finetune_epochs is None:
                s("finetune_epochs", 3)
            if self.finetune_lr is None:
                s("finetune_lr", self.lr / 5)
            if is_adversarial(self.finetune) and self.eps_finetune is None:
                s("eps_finetune", self.eps_eval)
        for name, f in METHOD_PARAMS.items():  # the plug-ins' parameters take their declared defaults
            if getattr(self, name) is None and self._applies(name):
                s(name, f.default)

    # -- flat dict <-> config (the one place) -----------------------------------------------
    def to_flat(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eps_curve"] = list(self.eps_curve)
        return d

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> "TrialConfig":
        unknown = [k for k in flat if k not in FIELD_NAMES]
        if unknown:
            raise ConfigError(unknown[0], "unknown parameter" + did_you_mean(unknown[0], FIELD_NAMES))
        return cls(**flat)

    @classmethod
    def from_row(cls, row) -> "TrialConfig":
        """The configuration of a results.csv row (a mapping or a pandas row): its fields that are
        not missing (None or NaN; :func:`rcsweep.metrics_table.missing`), other columns ignored.
        Raises ``ConfigError`` as :meth:`from_flat` does."""
        return cls.from_flat({k: row[k] for k in FIELD_NAMES if k in row and not missing(row[k])})

    def replace(self, **changes) -> "TrialConfig":
        return TrialConfig.from_flat({**_explicit(self), **changes})

    # stage keys: trials with equal keys share the work of that stage
    def pretrain_key(self) -> dict[str, Any]:
        keys = ("dataset", "model", "width", "seed", "train_size", "val_size", "batch_size", "lr",
                "lr_schedule", "momentum", "weight_decay", "norm", "attack_steps", "pretrain",
                "pretrain_epochs", "eps_pretrain", "eps_ramp_epochs")
        key = {k: getattr(self, k) for k in keys}
        # the pretraining objective's parameters; none for standard and adversarial (keys unchanged)
        key.update((k, getattr(self, k)) for k, (o, _) in OBJECTIVE_PARAMS.items() if o == self.pretrain)
        if self.precision != "fp32":  # fp32 keys unchanged: the stores of earlier sweeps stay valid
            key["precision"] = self.precision
        return key


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrialConfig))
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrialConfig)}
# the parameters whose value follows from the methods chosen (``replace`` drops them: the new methods decide)
_DEPENDENT_DEFAULTS = ("model",) + tuple(RULES)


def _explicit(cfg: TrialConfig) -> dict[str, Any]:
    """The config as a flat dict, without method-dependent values (so replace() can switch method)."""
    d = cfg.to_flat()
    for k in _DEPENDENT_DEFAULTS:
        if k != "model":
            d.pop(k)
    return d
