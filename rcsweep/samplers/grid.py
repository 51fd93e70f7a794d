"""The grid: every point of a finite space once, in the sweep file's order (``search: grid``).

The sweep enqueues the points in the study (``Study.enqueue_trial``), so a grid sweep has the
same journal, references and repeat rules as any other; the random sampler behind it draws only
what a point leaves unset (nothing, for a space of ``choice`` lists)."""
from __future__ import annotations

from .base import Sampler, SamplerContext


class Grid(Sampler):
    name = "grid"
    summary = "every point of a finite space once, in order"
    enumerates = True

    def build(self, ctx: SamplerContext):
        import optuna

        return optuna.samplers.RandomSampler(seed=ctx.seed)
