"""NSGA-II (Deb et al., "A fast and elitist multiobjective genetic algorithm: NSGA-II", IEEE TEC
2002; Optuna's ``NSGAIISampler``), with a population sized to the budget.

Optuna's NSGA-II crosses over the parameters of the *intersection* of every completed trial's
parameters. The references that rcsweep adds to the study carry only the parameters they share
with the space (a dense reference has no ``compression`` choice of the space), so with them in
the intersection NSGA-II would cross over ``pretrain`` alone and draw everything else at random:
measured on the digits replay and the continuous benchmark, it then issued exactly random
search's configurations. Here the intersection is taken over the trials the sampler drew
(:class:`SearchedTrialsSpace`); the references never are parents (they have no generation), so
nothing else changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .base import Sampler, SamplerContext, SamplerOptions, option


@dataclass(frozen=True)
class NSGA2Options(SamplerOptions):
    """``population_size`` (default: ``clip(round(num_samples / 5), 4, 50)``; Optuna's default 50
    would leave a 40-trial sweep in its random first generation); ``mutation_prob`` (default
    ``1 / parameters``, Optuna's); ``crossover_prob`` (default 0.9)."""
    population_size: Optional[int] = option(None, 2, 10_000, "trials per generation")
    mutation_prob: Optional[float] = option(None, 0.0, 1.0, "chance that a parameter mutates")
    crossover_prob: float = option(0.9, 0.0, 1.0, "chance of a crossover")


def population(ctx: SamplerContext) -> int:
    return int(min(max(round(ctx.num_samples / 5), 4), 50))


class NSGA2(Sampler):
    name = "nsga2"
    Params = NSGA2Options
    summary = "NSGA-II, population sized to the budget"

    def build(self, ctx: SamplerContext):
        import optuna

        o = self.options
        sampler = optuna.samplers.NSGAIISampler(seed=ctx.seed, population_size=o.population_size or population(ctx),
                                                mutation_prob=o.mutation_prob, crossover_prob=o.crossover_prob)
        if not hasattr(sampler, "_search_space"):  # Optuna's private attribute; test_search checks it is used
            raise RuntimeError("this Optuna's NSGAIISampler has no _search_space to replace")
        sampler._search_space = SearchedTrialsSpace()
        return sampler


class SearchedTrialsSpace:
    """Optuna's intersection search space (``optuna.search_space.intersection_search_space``) over
    the completed trials that are not references (user attribute ``reference``)."""

    def calculate(self, study) -> dict:
        from optuna.search_space import intersection_search_space
        from optuna.trial import TrialState

        trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if not t.user_attrs.get("reference")]
        return intersection_search_space(trials)
