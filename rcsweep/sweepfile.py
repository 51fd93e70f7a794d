"""The sweep-file schema (YAML), validated in full before anything runs.

A sweep file has four parts: ``fixed`` trial parameters, a ``space`` of searched parameters,
optional ``references`` (configurations run first, counted in ``num_samples``), and sweep-level
fields (``search``, ``objectives``, ``num_samples``, ...). Every error names the field, e.g.
``space.sparsity.uniform: ...``. See the README for a full example.

Search-space entries (one key each, plus an optional ``default`` used by ``rcsweep trial``):
``{choice: [a, b, ...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{int: [lo, hi]}``;
``uniform`` and ``int`` take an optional ``step`` (``{uniform: [0.1, 0.9], step: 0.05}``): values
are drawn on that grid, so that two suggestions are the same configuration exactly when they are
equal (a sweep never runs one configuration twice), and ``search: grid`` can enumerate them.

``resources`` is what one trial holds of a Ray node (``{cpu: 1, gpu: 0}``; ``gpu`` a whole number or
1/k for an integer k, so that k trials fill one GPU: 0.5, 0.25, 1/3). ``gpu_fallback: cpu`` lets a
trial that Ray gave a GPU on a node where CUDA is not usable run on the CPU, saying so in its record
(default ``error``: it fails in one line). ``pretrain_resources: {cpu: N}`` lets a shared pretraining
use up to N CPU threads (:mod:`rcsweep.sweep.store`).

``search`` names a sampler of :data:`rcsweep.samplers.SAMPLERS` (``tpe``, ``nsga2``, ``gp``,
``random``, ``grid``; no ``search`` or ``search: optuna`` is :data:`rcsweep.samplers.DEFAULT`),
alone or with its options: ``search: {sampler: tpe, n_startup_trials: 6}``. ``constraints`` bound
any metric a sweep can optimise: ``constraints: {clean_acc: ">= 0.7", model_bits: "<= 2e6"}``
(:mod:`rcsweep.constraints`). ``energy: {cpu_watts: 12, grid_gco2_per_kwh: 445}`` sets how energy is
estimated where no counter is readable and the CO2 per kWh (:mod:`rcsweep.energy`); ``tracking:
{mlflow: URI, tensorboard: true}`` sends every trial to experiment trackers (:mod:`rcsweep.tracking`).
Parameters that do not apply to a trial's methods (``weight_bits`` without quantization,
``sparsity`` without pruning, ``eps_finetune`` without adversarial fine-tuning) are dropped.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from . import metrics_table
from .compress_params import StructuredPruneParams, includes
from .config import FIELD_NAMES, RULES, TrialConfig, applicable, parse_number
from .constraints import parse_constraints
from .early_stopping import EarlyStopping, parse_early_stopping
from .energy import EnergySettings
from .errors import ConfigError, UserError, did_you_mean
from .samplers import ALIASES, DEFAULT, SAMPLERS
from .tracking import TrackingSpec, check_trackers, parse_tracking

SEARCH = tuple(SAMPLERS.names()) + tuple(a for a in ALIASES if a not in SAMPLERS.names())
#: what ``search`` may name, for error messages: the samplers, then the aliases of other samplers
ALLOWED_SEARCH = ", ".join(SAMPLERS.names()) + "".join(
    f"; {a} means {s}" + (" (the default)" if s == DEFAULT else "") for a, s in ALIASES.items() if a != s)
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
METRICS = metrics_table.OBJECTIVES  # the metrics a sweep may name as objectives
DIRECTIONS = ("max", "min")
NEVER_SEARCHED = ("eps_eval", "dataset")
GPU_FALLBACK = ("error", "cpu")  # a trial given a GPU on a node where CUDA is not usable: fail, or run on the CPU
GPU_SHARE_TOLERANCE = 0.01  # k trials at gpu 1/k may fill a GPU to 99%: gpu 0.33 is 1/3


@dataclass(frozen=True)
class Dist:
    """One searched parameter."""
    name: str
    kind: str  # choice | uniform | loguniform | int
    values: tuple  # choices, or (lo, hi)
    default: Any = None
    step: Any = None  # uniform/int: values lie on lo + k * step

    @property
    def finite(self) -> bool:
        """Whether the parameter takes finitely many values (a choice, an int range, a stepped range)."""
        return self.kind in ("choice", "int") or self.step is not None

    def grid_values(self) -> tuple:
        """Every value, in order (choices as listed; ranges from low to high by ``step``)."""
        if not self.finite:
            raise ConfigError(f"space.{self.name}", f"search: grid needs a 'choice' list, an 'int' range or a "
                                                    f"'step', not a continuous '{self.kind}'")
        if self.kind == "choice":
            return self.values
        lo, hi = self.values
        step = self.step or 1
        n = int(round((hi - lo) / step))
        if self.kind == "int":
            return tuple(range(lo, hi + 1, step))
        return tuple(float(round(lo + k * step, 12)) for k in range(n + 1))

    def to_dict(self) -> dict:
        d = {self.kind: list(self.values)}
        if self.step is not None:
            d["step"] = self.step
        if self.default is not None:
            d["default"] = self.default
        return d


@dataclass(frozen=True)
class SweepSpec:
    name: str
    fixed: dict
    space: dict  # name -> Dist
    references: tuple = ()
    search: str = DEFAULT  # a sampler's name (rcsweep.samplers.SAMPLERS)
    search_options: dict = field(default_factory=dict)  # its options, as the sweep file gives them
    constraints: tuple = ()  # rcsweep.constraints.Constraint
    objectives: tuple = metrics_table.DEFAULT_OBJECTIVES
    num_samples: Optional[int] = None  # None: 12 (optuna/random) or the grid's size
    max_concurrent: int = 2
    resources: dict = field(default_factory=lambda: {"cpu": 1.0, "gpu": 0.0})
    gpu_fallback: str = "error"  # GPU_FALLBACK
    pretrain_resources: Optional[dict] = None  # {cpu: N}: CPU threads a shared pretraining may use
    search_seed: int = 0
    trial_timeout_s: Optional[float] = None
    time_budget_s: Optional[float] = None
    max_failures: int = 1
    description: str = ""
    energy: EnergySettings = field(default_factory=EnergySettings)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    early_stopping: Optional[EarlyStopping] = None  # rcsweep.early_stopping: off by default

    # -- trials ------------------------------------------------------------------------------
    def trial_config(self, sampled: dict | None = None, overrides: dict | None = None) -> TrialConfig:
        """The trial for sampled space values (missing ones take their defaults) and explicit
        ``overrides`` (``--set``). Inapplicable fixed/space parameters are dropped; inapplicable
        overrides are an error."""
        sampled = dict(sampled or {})
        overrides = dict(overrides or {})
        for k in overrides:
            if k not in FIELD_NAMES:
                raise ConfigError(k, "unknown parameter" + did_you_mean(k, FIELD_NAMES))
        params = {**self.fixed, **{n: d.default for n, d in self.space.items()}, **sampled}
        merged = {**params, **overrides}
        out = {k: v for k, v in params.items() if k not in overrides and applicable(k, merged)}
        out.update(overrides)
        return TrialConfig.from_flat(out)

    def grid(self) -> list[dict]:
        """Every distinct combination of the space's choices (after dropping inapplicable ones)."""
        names = list(self.space)
        seen, points = set(), []
        for combo in itertools.product(*(self.space[n].grid_values() for n in names)):
            point = dict(zip(names, combo))
            merged = {**self.fixed, **point}
            point = {k: v for k, v in point.items() if applicable(k, merged)}
            key = tuple(sorted((k, repr(v)) for k, v in point.items()))
            if key not in seen:
                seen.add(key)
                points.append(point)
        return points

    def total_trials(self) -> int:
        if self.num_samples is not None:
            return self.num_samples
        if self.search == "grid":
            return len(self.references) + len(self.grid())
        return 12

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "fixed": dict(self.fixed),
                "space": {n: d.to_dict() for n, d in self.space.items()}, "references": [dict(r) for r in self.references],
                "search": {"sampler": self.search, **self.search_options} if self.search_options else self.search,
                "constraints": dict(c.to_item() for c in self.constraints) or None,
                "objectives": {m: d for m, d in self.objectives},
                "num_samples": self.num_samples, "max_concurrent": self.max_concurrent,
                "resources": dict(self.resources), "gpu_fallback": self.gpu_fallback,
                "pretrain_resources": dict(self.pretrain_resources) if self.pretrain_resources else None,
                "search_seed": self.search_seed,
                "trial_timeout_s": self.trial_timeout_s, "time_budget_s": self.time_budget_s,
                "max_failures": self.max_failures, "energy": self.energy.to_dict(),
                "tracking": self.tracking.to_dict(),
                "early_stopping": self.early_stopping.to_dict() if self.early_stopping else None}

    def replace(self, **changes) -> "SweepSpec":
        return parse_sweep({**self.to_dict(), **changes}, self.name)

    def sampler(self):
        """The :class:`rcsweep.samplers.Sampler` of ``search``, with its options."""
        cls = SAMPLERS.get(self.search)
        return cls(cls.Params(**self.search_options))

    def finite_points(self, limit: int = 100_000) -> list[dict] | None:
        """Every distinct point of a finite space (:meth:`grid`), or None when some parameter is
        continuous or the space has more than ``limit`` points."""
        if not all(d.finite for d in self.space.values()):
            return None
        if math.prod(len(d.grid_values()) for d in self.space.values()) > limit:
            return None
        return self.grid()


TOP_LEVEL = tuple(f.name for f in dataclasses.fields(SweepSpec) if f.name != "search_options")


def load_sweep(source, name: str | None = None) -> SweepSpec:
    """A validated SweepSpec from a YAML path or a dict, its experiment trackers installed and
    reachable (:func:`rcsweep.tracking.check_trackers`; a sweep folder's own ``sweep.yaml`` is read
    with :func:`parse_sweep`, which does not ask)."""
    if isinstance(source, dict):
        return _checked(parse_sweep(source, name or source.get("name") or "sweep"))
    path = Path(source)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file") from None
    if data is None:
        raise UserError(f"{path} is empty")
    if not isinstance(data, dict):
        raise UserError(f"{path}: a sweep file must be a mapping of fields, got {type(data).__name__}")
    return _checked(parse_sweep(data, name or data.get("name") or path.stem))


def _checked(spec: SweepSpec) -> SweepSpec:
    check_trackers(spec.tracking)
    return spec


def parse_sweep(data: dict, name: str) -> SweepSpec:
    for k in data:
        if k not in TOP_LEVEL:
            hint = " (trial parameters go under 'fixed' or 'space')" if k in FIELD_NAMES else did_you_mean(str(k), TOP_LEVEL)
            raise ConfigError(str(k), "unknown sweep field" + hint)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError("name", f"must be a plain folder name, got {name!r}")
    fixed = _mapping(data, "fixed")
    for k in fixed:
        if k not in FIELD_NAMES:
            raise ConfigError(f"fixed.{k}", "unknown trial parameter" + did_you_mean(str(k), FIELD_NAMES))
    for k in sorted(fixed, key=lambda k: (k not in ("dataset", "model", "norm"), k)):
        _check_value(k, fixed[k], fixed, f"fixed.{k}")
    space = {}
    for k, v in _mapping(data, "space").items():
        if k not in FIELD_NAMES:
            raise ConfigError(f"space.{k}", "unknown trial parameter" + did_you_mean(str(k), FIELD_NAMES))
        if k in NEVER_SEARCHED:
            raise ConfigError(f"space.{k}", "is fixed per sweep and never searched; put it under 'fixed'")
        if k in fixed:
            raise ConfigError(f"space.{k}", "is also under 'fixed'; give it in one place")
        space[k] = _parse_dist(k, v, fixed)
    spec_kw = dict(name=name, fixed=fixed, space=space)
    spec_kw["description"] = str(data.get("description") or "")
    spec_kw["search"], spec_kw["search_options"] = _search(data.get("search"))
    spec_kw["constraints"] = parse_constraints(data.get("constraints"))
    spec_kw["objectives"] = _objectives(data.get("objectives"))
    spec_kw["num_samples"] = _int(data, "num_samples", None, 1)
    spec_kw["max_concurrent"] = _int(data, "max_concurrent", 2, 1)
    spec_kw["search_seed"] = _int(data, "search_seed", 0, 0)
    spec_kw["max_failures"] = _int(data, "max_failures", 1, 0)
    spec_kw["trial_timeout_s"] = _seconds(data, "trial_timeout_s")
    spec_kw["time_budget_s"] = _seconds(data, "time_budget_s")
    spec_kw["resources"] = _resources(data.get("resources"))
    spec_kw["gpu_fallback"] = _gpu_fallback(data.get("gpu_fallback"))
    spec_kw["pretrain_resources"] = _pretrain_resources(data.get("pretrain_resources"), spec_kw["resources"])
    spec_kw["energy"] = EnergySettings.from_dict(data.get("energy"))
    spec_kw["tracking"] = parse_tracking(data.get("tracking"))
    refs = data.get("references") or []
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ConfigError("references", "must be a list of mappings of trial parameters")
    spec_kw["early_stopping"] = parse_early_stopping(data.get("early_stopping"), search=spec_kw["search"],
                                                     objectives=spec_kw["objectives"], fixed=fixed, space=space)
    spec = SweepSpec(references=tuple(refs), **spec_kw)
    # whole-trial checks: the default trial, each reference, and fixed parameters that can never apply
    _fixed_applies(fixed, space)
    spec.trial_config()
    for i, ref in enumerate(refs):
        try:
            spec.trial_config(overrides=ref)
        except ConfigError as e:
            raise ConfigError(f"references[{i}].{e.field}", str(e).split(": ", 1)[1]) from None
    _structured_sparsity_reachable(spec)
    if spec.search == "grid":
        n_grid = len(spec.grid())
        if spec.num_samples is not None and spec.num_samples != len(refs) + n_grid:
            fewer = "fewer" if spec.num_samples < len(refs) + n_grid else "more"
            raise ConfigError("num_samples", f"{spec.num_samples} is {fewer} than the grid's {n_grid} points plus "
                                             f"{len(refs)} references (leave it out for a grid)")
    elif spec.num_samples is not None and spec.num_samples < len(refs):
        raise ConfigError("num_samples", f"{spec.num_samples} is fewer than the {len(refs)} references")
    if spec.search != "grid" and not space and not refs and (spec.num_samples or 12) > 1:
        raise ConfigError("space", "is empty: nothing to search (use search: grid or add parameters)")
    return spec


def _search(v) -> tuple[str, dict]:
    """``search`` -> (sampler name, options): a name (``tpe``, or an alias such as ``optuna``) or
    ``{sampler: NAME, OPTION: VALUE, ...}``, options validated by the sampler's options class."""
    if v is None:
        return DEFAULT, {}
    if isinstance(v, str):
        options = {}
        name = v
    elif isinstance(v, dict):
        if "sampler" not in v:
            raise ConfigError("search.sampler", f"is missing: search: {{sampler: NAME, ...}}; samplers: {ALLOWED_SEARCH}")
        name, options = v["sampler"], {k: x for k, x in v.items() if k != "sampler"}
    else:
        raise ConfigError("search", f"must be a sampler's name or {{sampler: NAME, option: value}}, got {v!r}")
    name = ALIASES.get(name, name) if isinstance(name, str) else name
    if not isinstance(name, str) or name not in SAMPLERS.names():
        raise ConfigError("search" if isinstance(v, str) else "search.sampler",
                          f"unknown sampler {name!r}" + did_you_mean(str(name), SEARCH) + f"; samplers: {ALLOWED_SEARCH}")
    cls = SAMPLERS.get(name)
    known = [f.name for f in dataclasses.fields(cls.Params)]
    for k in options:
        if k not in known:
            raise ConfigError(f"search.{k}", f"is not an option of sampler {name}" + did_you_mean(str(k), known)
                              + (f"; its options: {', '.join(known)}" if known else "; it takes none"))
    try:
        cls.Params(**options)
    except ConfigError as e:
        raise ConfigError(f"search.{e.field}", str(e).split(": ", 1)[1]) from None
    return name, options


def _mapping(data, key) -> dict:
    v = data.get(key) or {}
    if not isinstance(v, dict):
        raise ConfigError(key, f"must be a mapping, got {type(v).__name__}")
    return dict(v)


def _parse_dist(name: str, spec, fixed: dict) -> Dist:
    where = f"space.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(where, f"must be one of {{choice: [...]}}, {{uniform: [lo, hi]}}, "
                                 f"{{loguniform: [lo, hi]}}, {{int: [lo, hi]}}; got {spec!r}")
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    extra = [k for k in spec if k not in DISTRIBUTIONS and k not in ("default", "step")]
    if len(kinds) != 1 or extra:
        raise ConfigError(where, f"needs exactly one of {', '.join(DISTRIBUTIONS)} (and optionally default, step); "
                                 f"got keys {', '.join(map(str, spec))}")
    kind = kinds[0]
    values = spec[kind]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}", "must be a non-empty list")
    if kind == "choice":
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}.choice", f"has duplicate values: {values}")
        checked = [_check_value(name, v, fixed, f"{where}.choice") for v in values]
        values = tuple(checked)
    else:
        if len(values) != 2:
            raise ConfigError(f"{where}.{kind}", f"must be [low, high], got {values}")
        lo, hi = (parse_number(v, f"{where}.{kind}") for v in values)
        if kind == "int":
            if not (float(lo).is_integer() and float(hi).is_integer()):
                raise ConfigError(f"{where}.int", f"bounds must be integers, got {values}")
            lo, hi = int(lo), int(hi)
        if not lo < hi:
            raise ConfigError(f"{where}.{kind}", f"low {lo} must be below high {hi}")
        if kind == "loguniform" and lo <= 0:
            raise ConfigError(f"{where}.loguniform", f"bounds must be > 0, got {values}")
        for v in (lo, hi):
            _check_value(name, v, fixed, f"{where}.{kind}")
        values = (lo, hi)
    step = _step(spec.get("step"), kind, values, where)
    default = spec.get("default")
    if default is not None:
        default = _check_value(name, default, fixed, f"{where}.default")
    else:
        default = _natural_default(name, kind, values)
        if step is not None:  # the default lies on the grid too
            lo = values[0]
            default = type(lo)(lo + round((default - lo) / step) * step)
            default = round(default, 12) if isinstance(default, float) else default
    return Dist(name, kind, values, default, step)


def _step(step, kind: str, values: tuple, where: str):
    """A range's ``step`` (None when not given): a finite number > 0 (an integer for an ``int``
    range), at most ``high - low``, that divides ``high - low``."""
    if step is None:
        return None
    if kind not in ("uniform", "int"):
        raise ConfigError(f"{where}.step", f"only 'uniform' and 'int' ranges take a step, not '{kind}'")
    step = parse_number(step, f"{where}.step")
    if not (math.isfinite(step) and step > 0):
        raise ConfigError(f"{where}.step", f"must be a finite number > 0, got {step:g}")
    if kind == "int" and not float(step).is_integer():
        raise ConfigError(f"{where}.step", f"must be an integer for an int range, got {step:g}")
    lo, hi = values
    n = (hi - lo) / step
    if n < 1 - 1e-9:
        raise ConfigError(f"{where}.step", f"{step:g} is larger than the range [{lo:g}, {hi:g}]; "
                                           f"it must divide high - low = {hi - lo:g}")
    if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
        raise ConfigError(f"{where}.step", f"{step:g} does not divide the range [{lo:g}, {hi:g}]; "
                                           f"it must divide high - low = {hi - lo:g}")
    return int(step) if kind == "int" else float(step)


def _check_value(name, value, fixed, where):
    """Validate one value of a parameter through TrialConfig, in a context where it applies."""
    ctx = {k: v for k, v in fixed.items() if k in ("norm", "dataset", "model", "pretrain_epochs", "lr")}
    if name in RULES:  # methods under which it applies
        ctx.update(RULES[name].example)
    ctx[name] = value
    try:
        cfg = TrialConfig.from_flat(ctx)
    except ConfigError as e:  # a problem with this value, or with the fixed context it was checked in
        raise ConfigError(where if e.field == name else f"fixed.{e.field}", str(e).split(": ", 1)[1]) from None
    return getattr(cfg, name) if not isinstance(getattr(cfg, name), tuple) else list(getattr(cfg, name))


def _natural_default(name, kind, values):
    base = TrialConfig.__dataclass_fields__[name].default
    if kind == "choice":
        return base if base in values else values[0]
    lo, hi = values
    if base is not None and not isinstance(base, (str, tuple)) and lo <= base <= hi:
        return base
    if kind == "loguniform":
        return math.sqrt(lo * hi)
    mid = (lo + hi) / 2
    return int(round(mid)) if kind == "int" else mid


def _fixed_applies(fixed: dict, space: dict):
    for k in fixed:
        rule = RULES.get(k)
        if rule and not any(d in space for d in rule.keys) and not applicable(k, fixed):
            cfg_err = f"only applies with {', '.join(f'{d}: {v}' for d, v in rule.example.items())}-like methods"
            raise ConfigError(f"fixed.{k}", f"{cfg_err}, but {', '.join(f'{d}={fixed.get(d, TrialConfig.__dataclass_fields__[d].default)}' for d in rule.keys)}")


def _structured_sparsity_reachable(spec: SweepSpec) -> None:
    """Refuse a ``sparsity`` that structured pruning cannot reach on the sweep's models: beyond
    :func:`rcsweep.compress.max_structured_sparsity` for the narrowest model and width the sweep
    can pair with a ``prune_structured*`` compression (fixed value, every choice, a range's high end,
    a space default, the pruning default when none is given, and each reference)."""
    base = spec.trial_config()

    def values(name):  # the values a parameter takes; a range's low end gives the narrowest width
        if name in spec.fixed:
            return [spec.fixed[name]]
        d = spec.space.get(name)
        return [getattr(base, name)] if d is None else list(d.values) if d.kind == "choice" else [d.values[0]]

    from .compress.structured import REACH_EPS, beyond_limit_message, structured_limit

    def limit(model, dataset, width):
        try:
            return structured_limit(model, dataset, float(width))
        except Exception:  # noqa: BLE001 - a model that cannot be built fails in its trial with its own error
            return None

    def structured(compression):
        return includes(str(compression), StructuredPruneParams)

    if any(structured(c) for c in values("compression")):
        found = [(lim, m, w) for m in values("model") for w in values("width")
                 if (lim := limit(m, base.dataset, parse_number(w, "width"))) is not None]
        if found:
            lim, model, width = min(found, key=lambda t: t[0][0])
            d = spec.space.get("sparsity")
            if "sparsity" in spec.fixed:
                asked = [("fixed.sparsity", "", spec.fixed["sparsity"])]
            elif d is not None:
                asked = [("space.sparsity", "choice ", v) for v in d.values] if d.kind == "choice" else \
                    [("space.sparsity", "high ", d.values[1])]
                asked += [("space.sparsity", "default ", d.default)] if d.default is not None else []
            else:
                asked = [("sparsity", "the default ", StructuredPruneParams().sparsity)]
            for where, label, v in asked:
                if parse_number(v, where) > lim[0] + REACH_EPS:
                    raise ConfigError(where, label + beyond_limit_message(parse_number(v, where), model, lim,
                                                                          parse_number(width, "width")))
    for i, ref in enumerate(spec.references):
        cfg = spec.trial_config(overrides=ref)
        if structured(cfg.compression) and (lim := limit(cfg.model, cfg.dataset, cfg.width)) is not None \
                and cfg.sparsity > lim[0] + REACH_EPS:
            raise ConfigError(f"references[{i}].sparsity", beyond_limit_message(cfg.sparsity, cfg.model, lim, cfg.width))


def _int(data, key, default, minimum):
    v = data.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(key, f"expected an integer, got {v!r}")
    if v < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {v}")
    return v


def _seconds(data, key):
    v = data.get(key)
    if v is None:
        return None
    x = parse_number(v, key)
    if not x > 0:
        raise ConfigError(key, f"must be > 0 seconds, got {v!r}")
    return x


def _resources(v) -> dict:
    if v is None:
        return {"cpu": 1.0, "gpu": 0.0}
    if not isinstance(v, dict):
        raise ConfigError("resources", f"must be a mapping like {{cpu: 1, gpu: 0}}, got {v!r}")
    for k in v:
        if k not in ("cpu", "gpu"):
            raise ConfigError(f"resources.{k}", "unknown resource; use cpu and gpu")
    cpu = parse_number(v.get("cpu", 1), "resources.cpu")
    gpu = parse_number(v.get("gpu", 0), "resources.gpu")
    if not cpu > 0:
        raise ConfigError("resources.cpu", f"must be > 0, got {cpu}")
    _gpu_share(gpu, "resources.gpu")
    return {"cpu": cpu, "gpu": gpu}


def _gpu_share(gpu: float, where: str) -> None:
    """A GPU request is a whole number of GPUs or 1/k of one (an integer k >= 2): k trials then fill
    the GPU (to within GPU_SHARE_TOLERANCE, so 0.33 is 1/3). Other fractions (0.3, 0.4, 1.5) leave
    part of every GPU unused or cannot be met by one GPU."""
    if gpu < 0:
        raise ConfigError(where, f"must be >= 0, got {gpu:g}")
    if float(gpu).is_integer():
        return
    if gpu > 1:
        raise ConfigError(where, f"fractions are only allowed below 1, got {gpu:g}; use a whole number of GPUs")
    k = round(1 / gpu)
    if not 1 - GPU_SHARE_TOLERANCE <= k * gpu <= 1:
        raise ConfigError(where, f"{gpu:g} does not divide one GPU; use a whole number or 1/k for an integer k "
                                 f"(0.5, 0.25, 1/3, ...: k trials share a GPU)")


def _gpu_fallback(v) -> str:
    if v is None:
        return "error"
    if v not in GPU_FALLBACK:
        raise ConfigError("gpu_fallback", f"must be one of {', '.join(GPU_FALLBACK)}; got {v!r} (cpu: a trial given "
                                          f"a GPU on a node where CUDA is not usable runs on the CPU; error: it fails)")
    return v


def _pretrain_resources(v, resources: dict) -> dict | None:
    """``{cpu: N}``: the most CPU threads a shared pretraining may use, at least a trial's ``cpu``."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ConfigError("pretrain_resources", f"must be a mapping like {{cpu: 4}}, got {v!r}")
    for k in v:
        if k == "gpu":
            raise ConfigError("pretrain_resources.gpu", "a shared pretraining runs on its trial's device; give trials "
                                                        "GPUs with resources.gpu")
        if k != "cpu":
            raise ConfigError(f"pretrain_resources.{k}", "unknown resource; use cpu")
    cpu = parse_number(v.get("cpu", resources["cpu"]), "pretrain_resources.cpu")
    if not (math.isfinite(cpu) and cpu >= resources["cpu"]):
        raise ConfigError("pretrain_resources.cpu", f"must be at least a trial's resources.cpu "
                                                    f"({resources['cpu']:g}), got {cpu:g}")
    return {"cpu": cpu}


def _objectives(v) -> tuple:
    if v is None:
        return metrics_table.DEFAULT_OBJECTIVES
    items = []
    if isinstance(v, dict):
        items = list(v.items())
    elif isinstance(v, list):
        for o in v:
            if isinstance(o, str) and ":" in o:
                items.append(tuple(o.split(":", 1)))
            elif isinstance(o, dict) and len(o) == 1:
                items.append(next(iter(o.items())))
            else:
                raise ConfigError("objectives", f"entries look like 'robust_acc:max'; got {o!r}")
    else:
        raise ConfigError("objectives", f"must be a mapping {{metric: max|min}} or a list, got {v!r}")
    if not items:
        raise ConfigError("objectives", "needs at least one metric")
    seen = set()
    for metric, direction in items:
        if metric not in METRICS:
            raise ConfigError(f"objectives.{metric}", "is not a metric" + did_you_mean(str(metric), METRICS)
                              + f"; metrics: {', '.join(METRICS)}")
        if direction not in DIRECTIONS:
            raise ConfigError(f"objectives.{metric}", f"direction must be max or min, got {direction!r}")
        if metric in seen:
            raise ConfigError(f"objectives.{metric}", "is given twice")
        seen.add(metric)
    return tuple((m, d) for m, d in items)
