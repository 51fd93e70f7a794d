"""Gaussian-process Bayesian optimisation (Optuna's ``GPSampler``: a GP per objective with
log expected hypervolume improvement for several objectives; Daulton et al., NeurIPS 2020).

Optuna's GP models only the parameters every trial shares (the method choices of rcsweep's
conditional space, e.g. ``pretrain``, ``compression``, ``finetune``); a parameter that exists only
for some methods (``sparsity`` only when pruning) is drawn at random. rcsweep accepts this and says
so: in a space whose continuous parameters are all conditional, ``gp`` searches them no better
than random search does; use ``tpe`` there (grouped, it models each conditional group)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .base import Sampler, SamplerContext, SamplerOptions, option, startup_trials


@dataclass(frozen=True)
class GPOptions(SamplerOptions):
    """``n_startup_trials`` (default: as TPE's, :func:`~.base.startup_trials`); ``deterministic``
    (default true: a configuration, its seed included, gives the same model, so the GP fits no
    noise)."""
    n_startup_trials: Optional[int] = option(None, 0, 10_000, "random trials first, references counted")
    deterministic: bool = option(True, doc="the objective has no noise")


class GP(Sampler):
    name = "gp"
    Params = GPOptions
    summary = "Gaussian-process BO (shared parameters only; conditional ones at random)"

    def startup(self, ctx: SamplerContext) -> int:
        o = self.options
        return o.n_startup_trials if o.n_startup_trials is not None else startup_trials(ctx)

    def build(self, ctx: SamplerContext):
        import warnings

        import optuna

        o = self.options
        n_startup = self.startup(ctx)
        with warnings.catch_warnings():  # deterministic_objective is 'experimental' in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=ctx.seed, n_startup_trials=n_startup,
                                             deterministic_objective=o.deterministic, warn_independent_sampling=False)
