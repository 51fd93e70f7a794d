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

This module owns :class:`SweepSpec` and the whole-file checks (:func:`parse_sweep`); :mod:`.space`
parses the space and checks values in context, :mod:`.fields` the other sweep-level fields.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from .. import metrics_table
from ..config import FIELD_NAMES, TrialConfig, applicable
from ..constraints import parse_constraints
from ..early_stopping import EarlyStopping, parse_early_stopping
from ..energy import EnergySettings
from ..errors import ConfigError, UserError, did_you_mean
from ..samplers import DEFAULT, SAMPLERS
from ..tracking import TrackingSpec, check_trackers, parse_tracking
from .fields import (ALLOWED_SEARCH, DIRECTIONS, GPU_FALLBACK, GPU_SHARE_TOLERANCE, METRICS, SEARCH, mapping,
                     parse_gpu_fallback, parse_int, parse_objectives, parse_pretrain_resources, parse_resources,
                     parse_search, parse_seconds)
from .space import DISTRIBUTIONS, NEVER_SEARCHED, Dist, check_value, fixed_applies, parse_dist, structured_sparsity_reachable

__all__ = ["ALLOWED_SEARCH", "DIRECTIONS", "DISTRIBUTIONS", "Dist", "GPU_FALLBACK", "GPU_SHARE_TOLERANCE", "METRICS",
           "NEVER_SEARCHED", "SEARCH", "SweepSpec", "TOP_LEVEL", "load_sweep", "parse_sweep"]


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



SWEEP_FILE = "sweep.yaml"  # a sweep folder's validated sweep, as run, plus its provenance


def read_sweep_folder(folder) -> tuple[SweepSpec, dict]:
    """``(spec, provenance)`` from a sweep folder's ``sweep.yaml`` (the sweep as run, plus the
    ``provenance`` section rcsweep adds); a UserError if ``folder`` has none. Its trackers are
    not checked (where they are used, they are)."""
    folder = Path(folder)
    path = folder / SWEEP_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not a rcsweep sweep folder (no {SWEEP_FILE})")
    doc = yaml.safe_load(path.read_text()) or {}
    prov = doc.pop("provenance", {}) if isinstance(doc, dict) else {}
    return parse_sweep(doc, doc.get("name") or "sweep"), prov


def load_sweep(source, name: str | None = None) -> SweepSpec:
    """A validated SweepSpec from a YAML path or a dict, its experiment trackers installed and
    reachable (:func:`rcsweep.tracking.check_trackers`; a sweep folder's own ``sweep.yaml`` is read
    with :func:`read_sweep_folder`, which does not ask). A file's ``provenance`` section, which a
    sweep folder's ``sweep.yaml`` has, is ignored: such a file can be run again."""
    if isinstance(source, dict):
        return _checked(parse_sweep(source, name or source.get("name") or "sweep"))
    path = Path(source)
    if path.is_dir():
        hint = f"; its sweep file is {path / SWEEP_FILE}" if (path / SWEEP_FILE).is_file() else ""
        raise UserError(f"{path} is a folder, not a sweep file{hint}")
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
    if isinstance(data.get("provenance"), dict):  # a sweep folder's sweep.yaml, run or validated again
        data.pop("provenance")
    return _checked(parse_sweep(data, name or data.get("name") or path.stem))



def _checked(spec: SweepSpec) -> SweepSpec:
    check_trackers(spec.tracking)
    return spec



#: why a metric is not written by every trial, by its ``when`` (rcsweep.metrics_table)
_NOT_WRITTEN = {"verified": "is written by 'rcsweep verify' after the sweep, never by a trial",
                "constrained": "is written by the sweep's constraints, never by a trial",
                "screened": "is written by early stopping's screening, not by every trial",
                "quant": "is written only by quantized trials (a weight_bits)",
                "act_quant": "is written only by trials with quantized activations (act_bits below 32)",
                "int8": "is written only by trials with 8-bit weights and activations (weight_bits 8, act_bits 8)"}


def objectives_written(spec: SweepSpec) -> None:
    """Refuse an objective that some trial of ``spec`` cannot write (ConfigError naming it): the
    searcher would be told such a trial failed (a new user's sweep on ``verified_robust_acc`` told
    Optuna every trial failed and ran configurations again). Checked on each reference and every
    point of a finite space; of a continuous one, on its trial at its defaults only."""
    by_name = {m.name: m for m in metrics_table.METRICS}
    if all(by_name[metric].when == "always" for metric, _ in spec.objectives):
        return  # every trial writes them: no configuration to enumerate (a sweep folder is read often)
    configs = [(f"references[{i}]", spec.trial_config(overrides=r)) for i, r in enumerate(spec.references)]
    points = spec.finite_points()
    if points is None:
        configs.append(("the space's trial at its defaults", spec.trial_config()))
    else:
        configs += [(f"the space's point {p}", spec.trial_config(p)) for p in points]
    for metric, _ in spec.objectives:
        m = by_name[metric]
        for where, cfg in configs:
            if not metrics_table.applies(m, cfg.to_flat()):
                raise ConfigError(f"objectives.{metric}", f"{_NOT_WRITTEN.get(m.when, 'is not written by every trial')}"
                                                          + ("" if m.when in ("verified", "constrained", "screened")
                                                             else f", and {where} is not one"))


def parse_sweep(data: dict, name: str) -> SweepSpec:
    for k in data:
        if k not in TOP_LEVEL:
            hint = " (trial parameters go under 'fixed' or 'space')" if k in FIELD_NAMES else did_you_mean(str(k), TOP_LEVEL)
            raise ConfigError(str(k), "unknown sweep field" + hint)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError("name", f"must be a plain folder name, got {name!r}")
    fixed = mapping(data, "fixed")
    for k in fixed:
        if k not in FIELD_NAMES:
            raise ConfigError(f"fixed.{k}", "unknown trial parameter" + did_you_mean(str(k), FIELD_NAMES))
    for k in sorted(fixed, key=lambda k: (k not in ("dataset", "model", "norm"), k)):
        check_value(k, fixed[k], fixed, f"fixed.{k}")
    space = {}
    for k, v in mapping(data, "space").items():
        if k not in FIELD_NAMES:
            raise ConfigError(f"space.{k}", "unknown trial parameter" + did_you_mean(str(k), FIELD_NAMES))
        if k in NEVER_SEARCHED:
            raise ConfigError(f"space.{k}", "is fixed per sweep and never searched; put it under 'fixed'")
        if k in fixed:
            raise ConfigError(f"space.{k}", "is also under 'fixed'; give it in one place")
        space[k] = parse_dist(k, v, fixed)
    spec_kw = dict(name=name, fixed=fixed, space=space)
    spec_kw["description"] = str(data.get("description") or "")
    spec_kw["search"], spec_kw["search_options"] = parse_search(data.get("search"))
    spec_kw["constraints"] = parse_constraints(data.get("constraints"))
    spec_kw["objectives"] = parse_objectives(data.get("objectives"))
    spec_kw["num_samples"] = parse_int(data, "num_samples", None, 1)
    spec_kw["max_concurrent"] = parse_int(data, "max_concurrent", 2, 1)
    spec_kw["search_seed"] = parse_int(data, "search_seed", 0, 0)
    spec_kw["max_failures"] = parse_int(data, "max_failures", 1, 0)
    spec_kw["trial_timeout_s"] = parse_seconds(data, "trial_timeout_s")
    spec_kw["time_budget_s"] = parse_seconds(data, "time_budget_s")
    spec_kw["resources"] = parse_resources(data.get("resources"))
    spec_kw["gpu_fallback"] = parse_gpu_fallback(data.get("gpu_fallback"))
    spec_kw["pretrain_resources"] = parse_pretrain_resources(data.get("pretrain_resources"), spec_kw["resources"])
    spec_kw["energy"] = EnergySettings.from_dict(data.get("energy"))
    spec_kw["tracking"] = parse_tracking(data.get("tracking"))
    refs = data.get("references") or []
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ConfigError("references", "must be a list of mappings of trial parameters")
    spec_kw["early_stopping"] = parse_early_stopping(data.get("early_stopping"), search=spec_kw["search"],
                                                     objectives=spec_kw["objectives"], fixed=fixed, space=space)
    spec = SweepSpec(references=tuple(refs), **spec_kw)
    # whole-trial checks: the default trial, each reference, and fixed parameters that can never apply
    fixed_applies(fixed, space)
    spec.trial_config()
    for i, ref in enumerate(refs):
        try:
            spec.trial_config(overrides=ref)
        except ConfigError as e:
            raise ConfigError(f"references[{i}].{e.field}", e.message) from None
    structured_sparsity_reachable(spec)
    objectives_written(spec)
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

