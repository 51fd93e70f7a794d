"""A sweep's conditional search space as an Optuna define-by-run function.

Method choices (``pretrain``, ``compression``, ``finetune``) are drawn first; every other searched
parameter is drawn only where it applies to the methods drawn (``weight_bits`` only when
quantizing, ``sparsity`` only when pruning, ``eps_finetune`` only with adversarial fine-tuning),
so Optuna never models a parameter that did not act on the trial.
"""
from __future__ import annotations

from ..config import applicable
from ..config.methods import METHOD_DEFAULTS
from ..sweepfile import Dist, SweepSpec

METHODS = tuple(METHOD_DEFAULTS)  # the method choices, drawn before the parameters that depend on them
_PLAIN = (str, int, float, bool, type(None))


class ConditionalSpace:
    """``space(trial) -> {name: value}`` for Optuna (Ray's ``OptunaSearch(space=...)``).

    Args:
        spec: the validated sweep; its ``space`` entries become Optuna distributions
            (``choice`` -> categorical, ``uniform``/``loguniform`` -> float, ``int`` -> int) and its
            ``fixed`` parameters decide, with the methods drawn, what applies.
    """

    def __init__(self, spec: SweepSpec):
        self.fixed = dict(spec.fixed)
        order = list(spec.space)
        self.dists = sorted(spec.space.values(), key=lambda d: (d.name not in METHODS, order.index(d.name)))

    def applied(self, params: dict) -> dict:
        """Those of a study trial's ``params`` that apply to it (what :meth:`__call__` would draw
        given them), in drawing order: a sampler's proposal holds every group's parameters."""
        drawn: dict = {}
        for dist in self.dists:
            if dist.name in params and applicable(dist.name, {**self.fixed, **drawn}):
                drawn[dist.name] = params[dist.name]
        return drawn

    def __call__(self, trial) -> dict:
        drawn: dict = {}
        for dist in self.dists:
            if applicable(dist.name, {**self.fixed, **drawn}):
                drawn[dist.name] = suggest(trial, dist)
        return drawn


def suggest(trial, dist: Dist):
    """One value of ``dist`` from an Optuna trial."""
    lo_hi = dist.values
    if dist.kind == "uniform":
        value = trial.suggest_float(dist.name, *lo_hi, step=dist.step)
        return round(value, 12) if dist.step is not None else value  # on the grid, not 0.30000000000000004
    if dist.kind == "loguniform":
        return trial.suggest_float(dist.name, *lo_hi, log=True)
    if dist.kind == "int":
        return trial.suggest_int(dist.name, *lo_hi, step=dist.step or 1)
    if all(isinstance(v, _PLAIN) for v in dist.values):
        return trial.suggest_categorical(dist.name, list(dist.values))
    # Optuna's categorical values must be plain scalars: draw the index of a list-valued choice
    return dist.values[trial.suggest_categorical(dist.name, list(range(len(dist.values))))]


def optuna_value(dist: Dist, value):
    """``value`` of ``dist`` as the study stores it (the index of a list-valued choice)."""
    if dist.kind == "choice" and not all(isinstance(v, _PLAIN) for v in dist.values):
        return [list(v) if isinstance(v, tuple) else v for v in dist.values].index(list(value) if isinstance(value, tuple) else value)
    return value


def distribution(dist: Dist):
    """The Optuna distribution :func:`suggest` draws ``dist`` from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dist.kind == "uniform":
        return FloatDistribution(*dist.values, step=dist.step)
    if dist.kind == "loguniform":
        return FloatDistribution(*dist.values, log=True)
    if dist.kind == "int":
        return IntDistribution(*dist.values, step=dist.step or 1)
    if all(isinstance(v, _PLAIN) for v in dist.values):
        return CategoricalDistribution(list(dist.values))
    return CategoricalDistribution(list(range(len(dist.values))))


#: metrics a configuration fixes before it trains, by what they follow from: "compression" (a
#: model's size and operations: the compression parameters) or "route" (training FLOPs: every
#: searched parameter but the attack budgets and optimiser settings, which change no FLOP count)
KNOWN_BEFORE_TRAINING = {"params": "compression", "params_nonzero": "compression", "model_bits": "compression",
                         "macs": "compression", "macs_nonzero": "compression", "bops": "compression",
                         "flops_pretrain": "route", "flops_finetune": "route", "flops_route": "route"}
_NO_FLOPS = {"lr", "finetune_lr", "lr_schedule", "momentum", "weight_decay", "trades_beta", "mart_beta", "fast_at_alpha"}


def known_objectives(spec: SweepSpec) -> dict:
    """``{objective index: searched parameters its value follows from}`` for the sweep's objectives
    known before training (:data:`KNOWN_BEFORE_TRAINING`), for ``SamplerContext.known``."""
    from ..compress_params import trial_params

    compression = {"compression", *trial_params()}
    out = {}
    for j, (metric, _) in enumerate(spec.objectives):
        what = KNOWN_BEFORE_TRAINING.get(metric)
        if what == "compression":
            out[j] = tuple(n for n in spec.space if n in compression)
        elif what == "route":
            out[j] = tuple(n for n in spec.space if not (n.startswith("eps_") or n in _NO_FLOPS))
    return out


def from_optuna(dist: Dist, value):
    """The value of ``dist`` that the study's stored ``value`` stands for (:func:`optuna_value`'s inverse)."""
    if dist.kind == "choice" and not all(isinstance(v, _PLAIN) for v in dist.values):
        return dist.values[int(value)]
    return value
