"""A sweep's constraints on metrics (``constraints: {clean_acc: ">= 0.7", model_bits: "<= 2e6"}``).

A constraint is a metric of the metric table (:mod:`rcsweep.metrics_table`, any numeric one a sweep
may optimise), ``>=`` or ``<=``, and a bound in the metric's unit (accuracies as fractions, sizes in
bits). A finished trial that violates one, or that misses a constrained metric (it was never
measured for this trial), is **infeasible**: flagged ``infeasible`` in ``results.csv`` with the
reason, kept off the front and out of cell means, and told to the sampler as infeasible
(Optuna's constraint values: ``> 0`` violated, ``<= 0`` feasible; ``Trial.set_constraint``).
Trials whose flags the table of statuses and flags (:mod:`rcsweep.trial_status`, sampler column
``infeasible``) marks infeasible, suspect and degenerate ones, are told as infeasible too, under the
constraint name ``trusted``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from . import metrics_table
from .errors import ConfigError, did_you_mean
from .trial_status import FLAGS, parse_flags

OPERATORS = (">=", "<=")
_BOUND = re.compile(r"^\s*(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
#: the constraint told to the sampler for trials whose flags make them infeasible
TRUSTED = "trusted"


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # ">=" or "<="
    bound: float

    def violation(self, value) -> float:
        """How far ``value`` is outside the bound (> 0: violated; <= 0: satisfied); ``inf`` when
        the value is missing or not a number."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return math.inf
        if math.isnan(v):
            return math.inf
        return self.bound - v if self.op == ">=" else v - self.bound

    def __str__(self):
        return f"{self.metric} {self.op} {self.bound:g}"

    def to_item(self) -> tuple:
        return self.metric, f"{self.op} {self.bound!r}"


def parse_constraints(value) -> tuple[Constraint, ...]:
    """The sweep file's ``constraints`` mapping -> Constraints.

    Raises:
        ConfigError: ``constraints.<metric>`` for a metric that is not in the metric table (or not
            numeric), or a bound that is not ``'>= NUMBER'`` / ``'<= NUMBER'``.
    """
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError("constraints", f"must be a mapping {{metric: '>= 0.7'}}, got {value!r}")
    numeric = [m.name for m in metrics_table.METRICS if m.direction is not None]
    out = []
    for metric, bound in value.items():
        where = f"constraints.{metric}"
        if metric not in numeric:
            raise ConfigError(where, "is not a metric a sweep can constrain" + did_you_mean(str(metric), numeric)
                              + f"; metrics: {', '.join(numeric)}")
        m = _BOUND.match(str(bound)) if isinstance(bound, str) else None
        if m is None:
            raise ConfigError(where, f"must look like '>= 0.7' or '<= 2e6' (a quoted string), got {bound!r}")
        number = float(m.group(2))
        problem = metrics_table.metric(metric).check(number)
        if problem:
            raise ConfigError(where, f"the bound is outside the metric's range: {problem}")
        out.append(Constraint(str(metric), m.group(1), number))
    return tuple(out)


def violations(metrics: dict, constraints) -> list[str]:
    """The constraints a trial's ``metrics`` violate, each as one phrase
    (``'clean_acc 0.612 < 0.7'``, ``'model_bits not measured'``)."""
    out = []
    for c in constraints:
        v = metrics.get(c.metric)
        gap = c.violation(v)
        if gap == math.inf:
            out.append(f"{c.metric} not measured")
        elif gap > 0:
            out.append(f"{c.metric} {float(v):.4g} {'<' if c.op == '>=' else '>'} {c.bound:g}")
    return out


def sampler_constraints(metrics: dict, constraints, flags=()) -> dict[str, float]:
    """What the sampler is told (``{name: value}``, ``> 0`` violated): each constraint's violation
    (``1e9`` for a missing metric, so that Optuna gets a finite number) and ``trusted`` = 1 when a
    flag's sampler rule is ``infeasible`` (suspect, degenerate, infeasible), else 0."""
    told = {str(c): (1e9 if (g := c.violation(metrics.get(c.metric))) == math.inf else float(g)) for c in constraints}
    bad = [f for f in (parse_flags(flags) if isinstance(flags, str) else flags)
           if f in FLAGS and FLAGS[f].sampler == "infeasible" and f != "infeasible"]
    told[TRUSTED] = 1.0 if bad else 0.0
    return told


def apply(record: dict, constraints) -> dict:
    """Flag ``record`` (``record.json`` shape) infeasible when its metrics violate ``constraints``:
    adds ``infeasible`` to ``metrics.flags`` and the reasons to ``metrics.infeasible_reason``."""
    m = record.setdefault("metrics", {})
    broken = violations(m, constraints)
    if broken:
        from .trial_status import join_flags

        m["flags"] = join_flags(parse_flags(m.get("flags")) + ["infeasible"])
        m["infeasible_reason"] = "; ".join(broken)
    return record
