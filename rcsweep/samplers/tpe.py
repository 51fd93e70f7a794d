"""Multi-objective TPE (Optuna's ``TPESampler``; Bergstra et al., "Algorithms for
Hyper-Parameter Optimization", NeurIPS 2011; Ozaki et al., "Multiobjective Tree-Structured Parzen
Estimator", JAIR 2022), set for rcsweep's small, conditional spaces."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .base import Sampler, SamplerContext, SamplerOptions, option, startup_trials


@dataclass(frozen=True)
class TPEOptions(SamplerOptions):
    """``n_startup_trials`` (default: sized from the budget by :func:`~.base.startup_trials`,
    references counted): random trials first; ``multivariate`` (default true) and ``group``
    (default true): model parameters jointly, per group of parameters that occur together (the
    conditional space: ``sparsity`` only with pruning), Optuna's advice for define-by-run spaces;
    ``n_ei_candidates`` (default 24): candidates scored per suggestion; ``constant_liar`` (default
    true): running trials count as bad, so that parallel trials spread out."""
    n_startup_trials: Optional[int] = option(None, 0, 10_000, "random trials first, references counted")
    multivariate: bool = option(True, doc="model the parameters jointly")
    group: bool = option(True, doc="one joint model per group of co-occurring parameters")
    n_ei_candidates: int = option(24, 1, 10_000, "candidates scored per suggestion")
    constant_liar: bool = option(True, doc="running trials count as bad")


class TPE(Sampler):
    name = "tpe"
    Params = TPEOptions
    summary = "multi-objective TPE, multivariate and grouped, startup sized to the budget"

    def startup(self, ctx: SamplerContext) -> int:
        o = self.options
        return o.n_startup_trials if o.n_startup_trials is not None else startup_trials(ctx)

    def build(self, ctx: SamplerContext):
        import warnings

        import optuna

        o = self.options
        n_startup = self.startup(ctx)
        with warnings.catch_warnings():  # multivariate/group are 'experimental' in Optuna 5, and are its advice here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=ctx.seed, n_startup_trials=n_startup, multivariate=o.multivariate,
                                              group=o.group and o.multivariate, n_ei_candidates=o.n_ei_candidates,
                                              constant_liar=o.constant_liar)
