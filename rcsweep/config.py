"""The trial configuration: one frozen, self-validating dataclass.

``TrialConfig.from_flat`` / ``TrialConfig.to_flat`` are the *only* conversion between the flat
dict that Ray, YAML files, ``--set`` and result tables use and the typed config. Every error
names the offending field.

Units: images are in [0, 1]; every epsilon is in pixel units of that range (``8/255``), for the
norm given by ``norm``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError
from .objectives import OBJECTIVES, Objective, param_fields

SCHEMA_VERSION = 1

# training objectives (rcsweep.objectives): `pretrain` takes their registry names (standard,
# adversarial = PGD-AT, trades, ...); `finetune` takes none, clean (the standard objective) and the rest
_EXTRA_OBJECTIVES = tuple(n for n in OBJECTIVES.names() if n not in ("standard", "adversarial"))
PRETRAIN = ("standard", "adversarial") + _EXTRA_OBJECTIVES
COMPRESSION = ("none", "prune", "prune_structured", "quant", "prune_quant", "prune_structured_quant")
QUANT_MODE = ("ptq", "qat")
QUANT_SCHEME = ("mse_channel", "minmax_tensor")  # rcsweep's quantizer; the study's (Thorsteinsson et al.)
FINETUNE = ("none", "clean", "adversarial") + _EXTRA_OBJECTIVES
NORM = ("linf", "l2")
LR_SCHEDULE = ("cosine", "step", "constant")
PRUNE_SCOPE = ("global", "layer")
PRECISION = ("fp32", "bf16")  # training (and its attack) in float32, or under bf16 autocast (rcsweep.device)
WEIGHT_BITS = tuple(range(2, 17)) + (32,)
ACT_BITS = tuple(range(2, 17)) + (32,)


def objective_name(stage_value: str) -> str:
    """The objectives-registry name of a ``pretrain`` or ``finetune`` value (``clean`` -> ``standard``)."""
    return "standard" if stage_value == "clean" else stage_value


# every objective parameter as a trial parameter: ``<objective>_<field>`` -> (objective, field)
OBJECTIVE_PARAMS: dict[str, tuple[str, dataclasses.Field]] = {
    f"{name}_{f.name}": (name, f) for name in OBJECTIVES.names() for f in param_fields(OBJECTIVES.get(name))}


def _is_adversarial(stage_value: str) -> bool:
    """Whether a ``pretrain``/``finetune`` value trains on perturbed inputs (so its epsilon applies)."""
    name = objective_name(stage_value)
    return name in OBJECTIVES.names() and OBJECTIVES.get(name).adversarial


def _with_objective_params(cls):
    """Adds an ``Optional`` field per objective parameter (``trades_beta``), ``None`` unless its
    objective is the trial's ``pretrain`` or ``finetune`` (then its default)."""
    for name, (_, f) in OBJECTIVE_PARAMS.items():
        cls.__annotations__[name] = "Optional[int]" if isinstance(f.default, int) else "Optional[float]"
        setattr(cls, name, None)
    return cls


def uses_pruning(compression: str) -> bool:
    return compression.startswith("prune")


def uses_quant(compression: str) -> bool:
    return compression.endswith("quant")


@dataclass(frozen=True)
@_with_objective_params
class TrialConfig:
    """Every parameter of one trial: pretrain -> compress -> fine-tune -> evaluate.

    Parameters that do not apply to the chosen methods are ``None`` (for example ``sparsity``
    without pruning); giving them a value is an error. The training objectives' own parameters
    (``trades_beta``, ...) follow the fields below, one per objective parameter.
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
    compression: str = "none"
    sparsity: Optional[float] = None  # fraction of prunable weights / channels removed
    prune_scope: Optional[str] = None  # unstructured only: global | layer
    weight_bits: Optional[int] = None
    act_bits: Optional[int] = None
    quant_mode: Optional[str] = None
    quant_scheme: Optional[str] = None  # mse_channel (default) | minmax_tensor
    # stage 3: fine-tuning
    finetune: str = "none"
    finetune_epochs: Optional[int] = None
    finetune_lr: Optional[float] = None  # None: lr / 5
    eps_finetune: Optional[float] = None  # None: eps_eval (adversarial fine-tuning only)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), f.type))
        self._validate()
        self._fill_defaults()

    # -- validation -------------------------------------------------------------------------
    def _validate(self):
        _choice("pretrain", self.pretrain, PRETRAIN)
        _choice("compression", self.compression, COMPRESSION)
        _choice("finetune", self.finetune, FINETUNE)
        _choice("norm", self.norm, NORM)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULE)
        _choice("precision", self.precision, PRECISION)
        _positive("width", self.width)
        _positive("batch_size", self.batch_size)
        _positive("lr", self.lr)
        _positive("attack_steps", self.attack_steps)
        _positive("eval_steps", self.eval_steps)
        _positive("eval_restarts", self.eval_restarts)
        for name in ("train_size", "val_size", "test_size"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
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
        # parameters that only apply to some methods
        adv_pre = _is_adversarial(self.pretrain)
        self._applies("eps_pretrain", adv_pre, "an adversarial pretrain (adversarial, trades, ...)")
        self._applies("eps_ramp_epochs", adv_pre, "an adversarial pretrain (adversarial, trades, ...)")
        if self.eps_pretrain is not None:
            self._check_eps("eps_pretrain", self.eps_pretrain)
        if self.eps_ramp_epochs is not None and self.eps_ramp_epochs < 0:
            raise ConfigError("eps_ramp_epochs", f"must be >= 0, got {self.eps_ramp_epochs}")
        prune, quant = uses_pruning(self.compression), uses_quant(self.compression)
        self._applies("sparsity", prune, "a pruning compression")
        self._applies("prune_scope", self.compression in ("prune", "prune_quant"), "unstructured pruning")
        for name in ("weight_bits", "act_bits", "quant_mode", "quant_scheme"):
            self._applies(name, quant, "a quantizing compression")
        if self.sparsity is not None and not 0 <= self.sparsity <= 0.99:
            raise ConfigError("sparsity", f"must be in [0, 0.99], got {self.sparsity}")
        if self.prune_scope is not None:
            _choice("prune_scope", self.prune_scope, PRUNE_SCOPE)
        if self.weight_bits is not None and self.weight_bits not in WEIGHT_BITS:
            raise ConfigError("weight_bits", f"unsupported bit-width {self.weight_bits}; use 2..16 or 32 (float)")
        if self.act_bits is not None and self.act_bits not in ACT_BITS:
            raise ConfigError("act_bits", f"unsupported bit-width {self.act_bits}; use 2..16 or 32 (float)")
        if self.quant_mode is not None:
            _choice("quant_mode", self.quant_mode, QUANT_MODE)
        if self.quant_scheme is not None:
            _choice("quant_scheme", self.quant_scheme, QUANT_SCHEME)
        ft = self.finetune != "none"
        self._applies("finetune_epochs", ft, "a finetune other than none")
        self._applies("finetune_lr", ft, "a finetune other than none")
        self._applies("eps_finetune", _is_adversarial(self.finetune), "an adversarial finetune (adversarial, trades, ...)")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise ConfigError("finetune_epochs", f"must be >= 0, got {self.finetune_epochs}")
        if self.finetune_lr is not None:
            _positive("finetune_lr", self.finetune_lr)
        if self.eps_finetune is not None:
            self._check_eps("eps_finetune", self.eps_finetune)
        for name, (objective, f) in OBJECTIVE_PARAMS.items():
            self._applies(name, objective in self._objectives(), f"pretrain or finetune: {objective}")
            if getattr(self, name) is not None:
                try:
                    OBJECTIVES.get(objective).Params(**{f.name: getattr(self, name)})
                except ConfigError as e:
                    raise ConfigError(name, str(e).split(": ", 1)[1]) from None

    def _objectives(self) -> tuple[str, ...]:
        """Registry names of the trial's training objectives (pretraining, then fine-tuning if any)."""
        return (self.pretrain,) + ((objective_name(self.finetune),) if self.finetune != "none" else ())

    def objective(self, stage: str) -> Objective:
        """The objective of ``stage`` (``pretrain`` or ``finetune``, not ``none``) with this trial's parameters."""
        name = objective_name(getattr(self, stage))
        cls = OBJECTIVES.get(name)
        return cls(cls.Params(**{f.name: getattr(self, f"{name}_{f.name}") for f in param_fields(cls)}))

    def _applies(self, name: str, applies: bool, needs: str):
        if not applies and getattr(self, name) is not None:
            raise ConfigError(name, f"only applies with {needs} (got pretrain={self.pretrain}, "
                                    f"compression={self.compression}, finetune={self.finetune})")

    def _check_eps(self, name: str, eps: float):
        if eps < 0 or (self.norm == "linf" and eps > 1):
            raise ConfigError(name, f"epsilon {eps} is outside [0, 1] (L-inf, pixel units of [0, 1] images)"
                              if self.norm == "linf" else f"epsilon {eps} must be >= 0")

    def _fill_defaults(self):
        """Fill method-dependent defaults, so that the record shows what actually ran."""
        s = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        if self.model is None:
            from .data import default_model  # local: config must not import torch at import time

            s("model", default_model(self.dataset))
        from .models import MODELS

        if self.model not in MODELS:
            raise ConfigError("model", f"unknown model {self.model!r}; known: {', '.join(MODELS.names())} "
                                       "(or a 'package.module:factory' path)" + _did_you_mean(self.model, MODELS.names()))
        if _is_adversarial(self.pretrain):
            if self.eps_pretrain is None:
                s("eps_pretrain", self.eps_eval)
            if self.eps_ramp_epochs is None:
                s("eps_ramp_epochs", self.pretrain_epochs // 2)
        if uses_pruning(self.compression):
            if self.sparsity is None:
                s("sparsity", 0.5)
            if self.compression in ("prune", "prune_quant") and self.prune_scope is None:
                s("prune_scope", "global")
        if uses_quant(self.compression):
            if self.weight_bits is None:
                s("weight_bits", 8)
            if self.act_bits is None:
                s("act_bits", 8)
            if self.quant_mode is None:
                s("quant_mode", "ptq")
            if self.quant_scheme is None:
                s("quant_scheme", "mse_channel")
        if self.finetune != "none":
            if self.finetune_epochs is None:
                s("finetune_epochs", 3)
            if self.finetune_lr is None:
                s("finetune_lr", self.lr / 5)
            if _is_adversarial(self.finetune) and self.eps_finetune is None:
                s("eps_finetune", self.eps_eval)
        for name, (objective, f) in OBJECTIVE_PARAMS.items():
            if objective in self._objectives() and getattr(self, name) is None:
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
            raise ConfigError(unknown[0], "unknown parameter" + _did_you_mean(unknown[0], FIELD_NAMES))
        return cls(**flat)

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
_DEPENDENT_DEFAULTS = ("model", "eps_pretrain", "eps_ramp_epochs", "sparsity", "prune_scope", "weight_bits",
                       "act_bits", "quant_mode", "quant_scheme", "finetune_epochs", "finetune_lr", "eps_finetune"
                       ) + tuple(OBJECTIVE_PARAMS)


def _explicit(cfg: TrialConfig) -> dict[str, Any]:
    """The config as a flat dict, without method-dependent values (so replace() can switch method)."""
    d = cfg.to_flat()
    for k in _DEPENDENT_DEFAULTS:
        if k != "model":
            d.pop(k)
    return d


def applicable(name: str, params: dict[str, Any]) -> bool:
    """Whether parameter ``name`` applies given the method choices in ``params``."""
    pretrain = params.get("pretrain", "standard")
    compression = params.get("compression", "none")
    finetune = params.get("finetune", "none")
    if name in ("eps_pretrain", "eps_ramp_epochs"):
        return _is_adversarial(pretrain)
    if name == "sparsity":
        return uses_pruning(compression)
    if name == "prune_scope":
        return compression in ("prune", "prune_quant")
    if name in ("weight_bits", "act_bits", "quant_mode", "quant_scheme"):
        return uses_quant(compression)
    if name in ("finetune_epochs", "finetune_lr"):
        return finetune != "none"
    if name == "eps_finetune":
        return _is_adversarial(finetune)
    if name in OBJECTIVE_PARAMS:
        return OBJECTIVE_PARAMS[name][0] in (pretrain, objective_name(finetune))
    return True


# -- coercion of YAML / command-line values ------------------------------------------------
_FRACTION = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")


def parse_number(value: Any, name: str = "value") -> float:
    """A float from a number or a fraction string such as ``'8/255'``."""
    if isinstance(value, bool):
        raise ConfigError(name, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if m:
            den = float(m.group(2))
            if den == 0:
                raise ConfigError(name, f"division by zero in {value!r}")
            return float(m.group(1)) / den
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(name, f"expected a number, got {value!r}")


def _coerce(name: str, value: Any, typ: str) -> Any:
    optional = typ.startswith("Optional[")
    base = typ[len("Optional["):-1] if optional else typ
    if value is None:
        if optional:
            return None
        raise ConfigError(name, "must not be empty")
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(name, f"expected a string, got {value!r}")
        return value
    if base == "int":
        if isinstance(value, bool):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value) if "." in value or "e" in value.lower() else int(value)
            except ValueError:
                raise ConfigError(name, f"expected an integer, got {value!r}") from None
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(name, f"expected an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, int):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        return value
    if base == "float":
        x = parse_number(value, name)
        if not math.isfinite(x):
            raise ConfigError(name, f"must be finite, got {value!r}")
        return x
    if base == "tuple":
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"expected a list of numbers, got {value!r}")
        return tuple(parse_number(v, name) for v in value)
    raise AssertionError(f"unhandled field type {typ}")


def _choice(name: str, value: str, choices: tuple):
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(map(str, choices))}; got {value!r}"
                          + _did_you_mean(str(value), [str(c) for c in choices]))


def _positive(name: str, value):
    if not value > 0:
        raise ConfigError(name, f"must be > 0, got {value}")


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
