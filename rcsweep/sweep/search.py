"""The sweep's Ray Tune searcher: references first, then grid points or Optuna suggestions.

:class:`SweepSearcher` issues exactly ``num_samples`` trials. Each suggestion is the trial's full
flat configuration (``SweepSpec.trial_config(...).to_flat()``), so a trial never needs the sweep
file. ``num_samples`` comes from the param space's ``_sweep`` entry through
``set_search_properties``, which Tune calls on every run, also after ``Tuner.restore``: that is
how ``rcsweep resume DIR --num-samples M`` extends a sweep while the searcher's state (how many
trials it issued, Optuna's study) is restored from the experiment folder.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from ray.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from ..sweepfile import SweepSpec
from .space import ConditionalSpace
from .store import STORE_DIR, pretrain_id


class SweepSearcher(Searcher):
    """References, then grid points (``inner=None``) or the suggestions of ``inner``.

    An Optuna suggestion whose pretrained model a running trial is still training would only
    wait for it, idling its slot; up to ``LOOKAHEAD`` such suggestions are held back while one
    that can start at once is asked for (each is issued as soon as its model is ready, or when
    the lookahead is full). Asking ahead is what Optuna does for parallel workers anyway; held
    suggestions never issued (the sweep reached ``num_samples``) are told to Optuna as pruned.

    Args:
        spec: the validated sweep (references, grid, fixed parameters).
        inner: the searcher for non-reference trials (Optuna), or None for ``search: grid``.
    """

    LOOKAHEAD = 8

    def __init__(self, spec: SweepSpec, inner: Searcher | None = None):
        # The objectives live in ``inner``; leaving ours unset keeps Tune from requiring them in
        # the per-stage reports, which carry no final metrics yet.
        super().__init__(metric=None, mode=None)
        self.spec = spec
        self.limit = spec.total_trials()
        self.folder = None  # the sweep folder, to see which pretrained models are ready
        self.issued = 0
        self.asked = 0
        self.inner_ids: dict = {}  # Ray trial id -> the id ``inner`` knows the trial by
        self.held: list = []  # [(inner id, point)] suggested, not issued yet
        self.live: dict = {}  # Ray trial id -> pretraining key, for trials not complete
        self._grid = None
        if inner is not None:
            self.searcher = inner  # Tune saves and restores wrapped searchers through this name

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        sweep = config.get("_sweep", {})
        self.limit = int(sweep.get("num_samples", self.limit))
        self.folder = sweep.get("dir", self.folder)
        return True

    def suggest(self, trial_id: str):
        if self.issued >= self.limit:
            for inner_id, _ in self.held:  # asked for but never run: Optuna counts them as pruned
                self.searcher.on_trial_complete(inner_id)
            self.held = []
            return Searcher.FINISHED
        refs = self.spec.references
        point, overrides = {}, {}
        if self.issued < len(refs):
            overrides = dict(refs[self.issued])
        elif not hasattr(self, "searcher"):
            if self._grid is None:
                self._grid = self.spec.grid()
            index = self.issued - len(refs)
            if index >= len(self._grid):
                return Searcher.FINISHED
            point = self._grid[index]
        else:
            inner_id, point = self._from_inner()
            if point is None or point == Searcher.FINISHED:
                return point
            self.inner_ids[trial_id] = inner_id
        self.issued += 1
        cfg = self.spec.trial_config(point, overrides)
        self.live[trial_id] = pretrain_id(cfg)
        return {"trial": cfg.to_flat(), "reference": bool(overrides)}

    def _from_inner(self) -> tuple:
        """The oldest held or new suggestion that would not wait for a pretraining; else the oldest."""
        while True:
            for i, (_, point) in enumerate(self.held):
                if not self._would_wait(point):
                    return self.held.pop(i)
            if len(self.held) > self.LOOKAHEAD:
                return self.held.pop(0)
            self.asked += 1
            inner_id = f"inner_{self.asked}"
            point = self.searcher.suggest(inner_id)
            if point is None or point == Searcher.FINISHED:
                return self.held.pop(0) if self.held else (None, point)
            self.held.append((inner_id, point))

    def _would_wait(self, point: dict) -> bool:
        key = pretrain_id(self.spec.trial_config(point))
        ready = self.folder is not None and (Path(self.folder) / STORE_DIR / key / "pretrain.json").is_file()
        return not ready and key in self.live.values()

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False):
        self.live.pop(trial_id, None)
        if trial_id in self.inner_ids:
            self.searcher.on_trial_complete(self.inner_ids[trial_id], result=result, error=error)

    def get_state(self) -> dict:
        return {"issued": self.issued, "asked": self.asked, "inner_ids": dict(self.inner_ids),
                "held": list(self.held), "live": dict(self.live)}

    def set_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def save(self, checkpoint_path: str):  # used when this is the innermost searcher (grid)
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


class SweepSearchGenerator(SearchGenerator):
    """Tune's searcher driver, except that a restored one is never 'finished' by its saved state:
    a sweep extended by ``resume --num-samples`` must ask the searcher again (which answers
    FINISHED once more if there is nothing left to run)."""

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False


def build_searcher(spec: SweepSpec) -> SweepSearchGenerator:
    """The searcher for ``spec.search``: ``optuna`` (TPE, multi-objective), ``random`` (Optuna's
    random sampler over the same conditional space) or ``grid``; seeded by ``search_seed``."""
    inner = None
    if spec.search != "grid":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metrics = [m for m, _ in spec.objectives]
        modes = [d for _, d in spec.objectives]
        if spec.search == "random":
            kw = {"sampler": optuna.samplers.RandomSampler(seed=spec.search_seed)}
        else:
            kw = {"seed": spec.search_seed}
        inner = OptunaSearch(space=ConditionalSpace(spec), metric=metrics if len(metrics) > 1 else metrics[0],
                             mode=modes if len(modes) > 1 else modes[0], **kw)
    return SweepSearchGenerator(ConcurrencyLimiter(SweepSearcher(spec, inner), max_concurrent=spec.max_concurrent))
