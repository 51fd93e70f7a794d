"""The ``space`` of a sweep file: one :class:`Dist` per searched parameter, each value checked
through the trial configuration in a context where it applies, fixed parameters that can never
apply refused, and structured-pruning targets beyond what the sweep's models allow refused.
Part of :mod:`rcsweep.sweepfile`; every name is importable from there."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..compress_params import StructuredPruneParams, includes
from ..config import RULES, TrialConfig, applicable, parse_number
from ..errors import ConfigError

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
NEVER_SEARCHED = ("eps_eval", "dataset")


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


def parse_dist(name: str, spec, fixed: dict) -> Dist:
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
        checked = [check_value(name, v, fixed, f"{where}.choice") for v in values]
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
            check_value(name, v, fixed, f"{where}.{kind}")
        values = (lo, hi)
    step = _step(spec.get("step"), kind, values, where)
    default = spec.get("default")
    if default is not None:
        default = check_value(name, default, fixed, f"{where}.default")
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


def check_value(name, value, fixed, where):
    """Validate one value of a parameter through TrialConfig, in a context where it applies."""
    ctx = {k: v for k, v in fixed.items() if k in ("norm", "dataset", "model", "pretrain_epochs", "lr")}
    if name in RULES:  # methods under which it applies
        ctx.update(RULES[name].example)
    ctx[name] = value
    try:
        cfg = TrialConfig.from_flat(ctx)
    except ConfigError as e:  # a problem with this value, or with the fixed context it was checked in
        raise ConfigError(where if e.field == name else f"fixed.{e.field}", e.message) from None
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


def fixed_applies(fixed: dict, space: dict):
    for k in fixed:
        rule = RULES.get(k)
        if rule and not any(d in space for d in rule.keys) and not applicable(k, fixed):
            cfg_err = f"only applies with {rule.needs}"
            raise ConfigError(f"fixed.{k}", f"{cfg_err}, but {', '.join(f'{d}={fixed.get(d, TrialConfig.__dataclass_fields__[d].default)}' for d in rule.keys)}")


def structured_sparsity_reachable(spec) -> None:
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

    from ..compress.structured import REACH_EPS, beyond_limit_message, structured_limit

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

