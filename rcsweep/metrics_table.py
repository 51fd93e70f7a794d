"""Every per-trial metric, once: its name, unit, direction, axis label, hypervolume normalisation,
valid range and the rule for which trials write it.

This table is the single source for the metric names that a trial writes (``record.json``
``metrics``), that ``results.csv`` has as columns, that a sweep file may name as an objective, that
the Pareto and hypervolume code normalises and that the figures label. A metric declared here and
never written by a trial that should write it is caught by ``tests/test_metrics_table.py``, which
runs one trial per compression method and checks every applicable metric is present.

Fields of :class:`Metric`:

- ``unit``: ``fraction`` (accuracies and shares, in [0, 1]), ``count``, ``bits``, ``MACs``,
  ``BOPs``, ``ms``, ``s``, ``FLOPs``, ``kWh``, ``g`` (grams of CO2eq), ``eps`` (pixel units of
  [0, 1] images), or ``""``;
- ``direction``: ``max`` or ``min`` when the metric can be an objective (``None``: it cannot);
- ``scale``: how :mod:`rcsweep.pareto` maps a value to a hypervolume gain: ``unit`` (values in
  [0, 1]: ``g = v`` for max, ``1 - v`` for min), ``log_dense`` (``-log10(v / dense_model_bits)``),
  ``log_ref`` (``-log10(v / v_ref)``, ``v_ref`` the largest value analysed together), ``ratio_ref``
  (``1 - v / v_ref``);
- ``low``/``high``: the valid closed range (``None``: unbounded); a reader that finds a value
  outside it, or a non-finite one, excludes the trial and names trial and column;
- ``kind``: ``float``, ``int``, ``bool``, ``str`` or ``json`` (list/dict cells);
- ``when``: which trials write it: ``always``, ``quant`` (a quantizing compression), ``int8``
  (weights and activations at 8 bits: the integer-model check), ``act_quant`` (activations
  quantized below 32 bits), ``verified`` (written by ``rcsweep verify``, not by the trial),
  ``constrained`` (written by the sweep for sweeps with ``constraints``, not by the trial),
  ``screened`` (written by trials of sweeps with ``early_stopping``: the rung screening, issue 16).

The screening metrics (``screen_*``, :mod:`rcsweep.screening`) have names of their own: a rung's
cheap PGD on a fixed subset of ``val`` is never an objective's value. :data:`AT_RUNG` says how each
objective is known at a rung (:mod:`rcsweep.rungs`).

A metric that is a function of others (:data:`DERIVED`, e.g. ``flops_route``) is also derived when a
record or ``results.csv`` written before it existed is read, so old sweeps have it too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

UNITS = ("fraction", "count", "bits", "MACs", "BOPs", "ms", "s", "FLOPs", "kWh", "g", "eps", "")
SCALES = ("unit", "log_dense", "log_ref", "ratio_ref", None)
WHEN = ("always", "quant", "int8", "act_quant", "verified", "constrained", "screened")


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    label: str
    direction: Optional[str] = None
    scale: Optional[str] = None
    low: Optional[float] = 0.0
    high: Optional[float] = None
    kind: str = "float"
    when: str = "always"
    column: bool = True  # a results.csv column (False: record.json only)

    def __post_init__(self):
        assert self.unit in UNITS, self.unit
        assert self.scale in SCALES, self.scale
        assert self.when in WHEN, self.when
        assert self.direction in ("max", "min", None), self.direction
        assert (self.direction is None) == (self.scale is None), f"{self.name}: an objective needs a scale"

    def check(self, value: Any) -> Optional[str]:
        """``None`` if ``value`` is valid for this metric (or missing), else a short reason."""
        if value is None or self.kind in ("str", "json", "bool"):
            return None
        if isinstance(value, bool):
            return f"{self.name}={value!r} is not a number"
        try:
            v = float(value)
        except (TypeError, ValueError):
            return f"{self.name}={value!r} is not a number"
        if math.isnan(v):
            return None  # an empty cell
        if not math.isfinite(v):
            return f"{self.name}={value} is not finite"
        if self.low is not None and v < self.low:
            return f"{self.name}={v:g} is below {self.low:g}"
        if self.high is not None and v > self.high:
            return f"{self.name}={v:g} is above {self.high:g}"
        return None


def _acc(name, label, when="always", direction="max", column=True):
    return Metric(name, "fraction", label, direction, "unit" if direction else None, 0.0, 1.0, when=when,
                  column=column)


METRICS: tuple[Metric, ...] = (
    # accuracy (rcsweep.evaluate)
    _acc("clean_acc", "clean accuracy (%)"),
    _acc("robust_acc", "robust accuracy{eps} (%)"),
    Metric("robust_acc_curve", "fraction", "robust accuracy per eps", low=None, kind="json"),
    Metric("suspect", "", "suspect (masking check failed)", low=None, kind="bool"),
    Metric("suspect_reason", "", "why suspect", low=None, kind="str"),
    Metric("degenerate", "", "degenerate (chance-level or one-class)", low=None, kind="bool"),
    Metric("degenerate_reason", "", "why degenerate", low=None, kind="str"),
    Metric("infeasible_reason", "", "why infeasible", low=None, kind="str", when="constrained"),
    _acc("majority_pred_frac", "share of the most predicted class", direction=None),
    Metric("flags", "", "flags", low=None, kind="str"),
    # efficiency (rcsweep.metrics), counted on the compressed model
    Metric("params", "count", "parameters (count)", "min", "log_ref", kind="int"),
    Metric("params_nonzero", "count", "non-zero parameters (count)", "min", "log_ref", kind="int"),
    _acc("sparsity_measured", "measured sparsity (%)"),
    Metric("channels_removed", "fraction", "channels removed (%)", high=1.0),
    Metric("model_bits", "bits", "model size (bits)", "min", "log_dense", kind="int"),
    Metric("dense_model_bits", "bits", "dense model size (bits)", kind="int"),
    Metric("weight_bits_measured", "bits", "measured weight bits", low=1, high=32, kind="int"),
    Metric("macs", "MACs", "multiply-accumulates per example (MACs)", "min", "log_ref", kind="int"),
    Metric("macs_nonzero", "MACs", "non-zero multiply-accumulates per example (MACs)", "min", "log_ref",
           kind="int"),
    Metric("bops", "BOPs", "bit operations per example (BOPs)", "min", "log_ref"),
    Metric("latency_ms_b1", "ms", "latency at batch 1 (ms)", "min", "ratio_ref"),
    Metric("latency_ms_b128", "ms", "latency at batch 128 (ms)", "min", "ratio_ref"),
    Metric("latency_model", "", "model timed", low=None, kind="str", column=False),
    Metric("latency_threads", "count", "CPU threads timed with", kind="int", column=False),
    # the integer model of w8a8 trials (rcsweep.compress.int8)
    _acc("int8_clean_acc", "int8 clean accuracy (%)", when="int8"),
    _acc("sim_clean_acc", "simulated-quantization clean accuracy (%)", when="int8", direction=None,
         column=False),
    _acc("int8_agreement", "int8/simulated agreement (%)", when="int8", direction=None, column=False),
    Metric("transfer_examples", "count", "transfer-check examples", kind="int", when="int8", column=False),
    Metric("transfer_eps", "eps", "transfer-check eps", when="int8", column=False),
    _acc("transfer_sim_robust_acc", "simulated model's robust accuracy on the transfer examples (%)",
         when="int8", direction=None, column=False),
    _acc("int8_transfer_robust_acc", "int8 transfer robust accuracy (%)", when="int8"),
    # independent verification (rcsweep verify)
    _acc("verified_robust_acc", "independently verified robust accuracy (%)", when="verified"),
    # per-stage wall time and training compute (rcsweep.pipeline)
    Metric("time_pretrain_s", "s", "pretraining time (s)", "min", "ratio_ref"),
    Metric("time_compress_s", "s", "compression time (s)", "min", "ratio_ref"),
    Metric("time_finetune_s", "s", "fine-tuning time (s)", "min", "ratio_ref"),
    Metric("time_evaluate_s", "s", "evaluation time (s)", "min", "ratio_ref"),
    Metric("flops_pretrain", "FLOPs", "pretraining compute (FLOPs)", "min", "ratio_ref"),
    Metric("flops_finetune", "FLOPs", "fine-tuning compute (FLOPs)", "min", "ratio_ref"),
    # what producing this model alone costs: its pretrained model's whole pretraining (not a share of
    # it, even where a sweep shares that model) plus its fine-tuning
    Metric("flops_route", "FLOPs", "route training compute (FLOPs)", "min", "ratio_ref"),
    # the final evaluation's compute: forward passes counted on the evaluated model (x3 with a
    # backward pass), 2 FLOPs per MAC (rcsweep.metrics.PassCounter); the float twin's are not counted
    Metric("flops_evaluate", "FLOPs", "evaluation compute (FLOPs)"),
    # rung screening (rcsweep.screening; issue 16): clean and PGD accuracy on a fixed subset of val,
    # at the last rung the trial reached; screen_history holds every rung's
    _acc("screen_clean_acc", "screening clean accuracy on val (%)", when="screened", direction=None),
    _acc("screen_robust_acc", "screening robust accuracy on val (%)", when="screened", direction=None),
    Metric("screen_rung", "count", "last rung reached (fine-tuning epochs)", kind="int", when="screened"),
    Metric("screen_history", "", "screening at every rung", low=None, kind="json", when="screened"),
    Metric("flops_screen", "FLOPs", "screening compute (FLOPs)", when="screened"),
    Metric("time_screen_s", "s", "screening time (s)", when="screened"),
    Metric("early_stopped_reason", "", "why stopped early", low=None, kind="str", when="screened"),
    # per-stage energy (rcsweep.energy): a RAPL/NVML counter where readable, else the estimate
    # cpu_seconds x energy.cpu_watts; energy_source says which. Pretraining as flops_pretrain: the
    # whole pretraining of the trial's model, whichever trial ran it (None if a reused model lacks it)
    Metric("energy_kwh_pretrain", "kWh", "pretraining energy (kWh)", "min", "ratio_ref"),
    Metric("energy_kwh_compress", "kWh", "compression energy (kWh)", "min", "ratio_ref"),
    Metric("energy_kwh_finetune", "kWh", "fine-tuning energy (kWh)", "min", "ratio_ref"),
    Metric("energy_kwh_evaluate", "kWh", "evaluation energy (kWh)", "min", "ratio_ref"),
    Metric("energy_source", "", "energy source", low=None, kind="str"),
    # the four stages' energy x the sweep's energy.grid_gco2_per_kwh
    Metric("co2_g", "g", "CO2 of the route and evaluation (g CO2eq)", "min", "ratio_ref"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
assert len(BY_NAME) == len(METRICS), "a metric is declared twice"
#: the results.csv metric columns, in table order
COLUMNS: tuple[str, ...] = tuple(m.name for m in METRICS if m.column)
#: metrics a sweep may optimise (``objectives:`` and ``constraints:``)
OBJECTIVES: tuple[str, ...] = tuple(m.name for m in METRICS if m.direction is not None)
#: the default objectives of a sweep and of ``rcsweep pareto``
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = (("robust_acc", "max"), ("model_bits", "min"))
#: how each objective is known at a rung (issue 16): ``screen`` by the screening metric named, ``model``
#: measured on the compressed model (compression fixes it before fine-tuning), ``config`` projected to
#: its final value from the trial configuration (a cost is compared on what the trial will have cost,
#: never on what it spent so far). Objectives not listed have no rung value.
AT_RUNG: dict[str, tuple[str, str]] = {
    "clean_acc": ("screen", "screen_clean_acc"), "robust_acc": ("screen", "screen_robust_acc"),
    **{m: ("model", m) for m in ("params", "params_nonzero", "model_bits", "macs", "macs_nonzero", "bops")},
    **{m: ("config", m) for m in ("flops_pretrain", "flops_finetune", "flops_route")},
}
#: renamed metrics: old name -> new name (read from records written by older rcsweep)
RENAMED = {"transfer_int8_acc": "int8_transfer_robust_acc"}
#: derived metrics: name -> the metrics it is the sum of (filled in when an old record lacks it)
DERIVED = {"flops_route": ("flops_pretrain", "flops_finetune")}


def metric(name: str) -> Metric:
    """The metric called ``name``; KeyError if none."""
    return BY_NAME[name]


def label(name: str, eps_text: str = "") -> str:
    """The axis label of a metric (its name when not a metric)."""
    m = BY_NAME.get(name)
    return m.label.format(eps=eps_text) if m else name


def is_percent(name: str) -> bool:
    m = BY_NAME.get(name)
    return m is not None and m.unit == "fraction"


def missing(value) -> bool:
    """A value a record or a results.csv row does not have: None, or a NaN cell."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _given(value) -> bool:
    """A parameter that applies: not missing, not a blank cell of results.csv."""
    return not missing(value) and value != ""


def applies(m: Metric, params: dict) -> bool:
    """Whether a trial with these (flat) parameters writes metric ``m``. A trial quantizes when it
    has a ``weight_bits``: the configuration gives it one exactly when its compression method has a
    quantization part (:mod:`rcsweep.compress_params`), whatever the method is called."""
    wb, ab = params.get("weight_bits"), params.get("act_bits")
    quant = _given(wb)
    wb, ab = (wb if quant else None), (ab if _given(ab) else None)
    if m.when == "always":
        return True
    if m.when == "quant":
        return quant
    if m.when == "act_quant":
        return quant and ab is not None and int(ab) < 32
    if m.when == "int8":
        return quant and wb is not None and ab is not None and int(wb) == 8 and int(ab) == 8
    return False  # verified, constrained, screened: written by rcsweep verify or the sweep, not by every trial


def upgrade(metrics: dict) -> dict:
    """A record's ``metrics`` with renamed metrics under their current names and the
    :data:`DERIVED` metrics it lacks computed from their parts, where every part is a number (old
    records)."""
    out = dict(metrics)
    for old, new in RENAMED.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    for name, parts in DERIVED.items():
        values = [out.get(p) for p in parts]
        if out.get(name) is None and all(_is_number(v) for v in values):
            out[name] = sum(values)
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def invalid(values: dict) -> list[str]:
    """Reasons, one per invalid metric among ``values`` (name -> value): non-finite or out of range."""
    return [r for k, v in values.items() if k in BY_NAME for r in [BY_NAME[k].check(v)] if r]
