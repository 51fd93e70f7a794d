"""NSGA-II (Deb et al., "A fast and elitist multiobjective genetic algorithm: NSGA-II", IEEE TEC
2002; Optuna's ``NSGAIISampler``), with a population sized to the budget."""
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
        return optuna.samplers.NSGAIISampler(seed=ctx.seed, population_size=o.population_size or population(ctx),
                                             mutation_prob=o.mutation_prob, crossover_prob=o.crossover_prob)
