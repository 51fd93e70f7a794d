"""Random search (Bergstra and Bengio, JMLR 2012; Optuna's ``RandomSampler``): every parameter
drawn independently from its distribution; the baseline every other sampler must beat."""
from __future__ import annotations

from .base import Sampler, SamplerContext


class Random(Sampler):
    name = "random"
    summary = "independent random draws (the baseline)"

    def build(self, ctx: SamplerContext):
        import optuna

        return optuna.samplers.RandomSampler(seed=ctx.seed)
