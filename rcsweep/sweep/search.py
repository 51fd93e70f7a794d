"""The sweep's Ray Tune searcher: references first, then the suggestions of an Optuna study that
lives in the sweep folder, each configuration once.

Why not Ray's ``OptunaSearch``: it cannot add the references (which lie outside the searched
choices) to the study, sets no constraints, has no notion of a repeated configuration and keeps
its study in Tune's pickled searcher state rather than in a file. rcsweep drives the study with
Optuna's own ask-and-tell interface (``Study.ask``/``Study.tell``/``Study.add_trial``), so
sampling stays Optuna's; what is written here is the bookkeeping between Tune's trials and the
study's, which no library does. The study itself (its journal, what a trial tells it, what a
resumed searcher reads back) is :mod:`.study`; which configurations are the same and which unseen
one is nearest, :mod:`.identity`.

- **References** are run first; when one finishes it is added to the study as a completed trial
  (:func:`.study.finished_trial`). TPE and GP count them as startup trials.
- **Suggestions** come from the study, each configuration once and none that would only wait for
  a pretraining (:class:`.suggestions.Suggestions`, the searcher's other half). None is made
  while a reference runs and the trials in flight would complete the sampler's startup
  (``Sampler.startup``: TPE's random trials, references counted): one made then would be another
  random draw (:meth:`SweepSearcher._startup_running`).
- **A finished trial** is told to the study (:func:`.study.outcome`), and so is every repeated
  suggestion that waited for it. **A trial stopped early** (:mod:`.scheduler`) is told pruned
  (:func:`.study.tell_pruned`, which says why pruned rather than its rung values), and its
  configuration is never run again.
- **State**: Tune saves and restores the searcher's links between its trials and the study's
  (``get_state``); the study itself is in its journal, re-opened and reconciled on resume.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from ray.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher

from ..samplers import SamplerContext
from ..sweepfile import SweepSpec
from .folder import SEARCH_FILE, search_exhausted  # noqa: F401  (re-exported; they live there: status reads them without Ray)
from .identity import config_key
from .space import ConditionalSpace, known_objectives, optuna_value
from .store import pretrain_id
from .study import (SizeProbe, close_stale, finished_trial, known_from_study, open_study, outcome, results_rows,
                    running_trial, set_constraints, tell_pruned)
from .study import STUDY_FILE, told_value  # noqa: F401  (re-exported: importable from rcsweep.sweep.search)
from .suggestions import Suggestions


class SweepSearcher(Suggestions, Searcher):
    """References, then the study's suggestions, each configuration once.

    Args:
        spec: the validated sweep (references, space, fixed parameters, sampler, constraints).

    Attributes (for tests and ``rcsweep status``): ``repeats`` counts suggestions answered from an
    earlier trial instead of being run; ``exhausted`` is the reason the search ended early, or None.
    ``LOOKAHEAD`` and ``MAX_REPEATS`` come from :class:`.suggestions.Suggestions`.
    """

    def __init__(self, spec: SweepSpec):
        # The objectives are told to the study here; leaving Tune's unset keeps it from requiring
        # them in the per-stage reports, which carry no final metrics yet.
        super().__init__(metric=None, mode=None)
        self.spec = spec
        self.limit = spec.total_trials()
        self.folder = None  # the sweep folder: the study's journal, the pretrained models
        self.issued = 0
        self.numbers: dict = {}  # Ray trial id -> study trial number
        self.refs: dict = {}  # Ray trial id -> the reference's overrides
        self.held: list = []  # [(number, point)] suggested, not issued yet
        self.live: dict = {}  # Ray trial id -> pretraining key, for trials not complete
        self.waiting: dict = {}  # config key -> [numbers of repeats to tell when it finishes]
        self.repeats = 0
        self.exhausted = None
        self._study = None
        self._space = ConditionalSpace(spec)
        self._known: dict = {}  # config key -> "running" | "finished" | "failed", rebuilt from the study
        self._results: dict = {}  # config key -> (values, constraints) of a finished trial
        self._refs_told: set = set()  # config keys of references in the study
        self._startup = 0  # the sampler's startup trials (Sampler.startup), set when the study opens

    # -- Tune's interface ------------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        sweep = config.get("_sweep", {})
        self.limit = int(sweep.get("num_samples", self.limit))
        self.folder = sweep.get("dir", self.folder)
        return True

    def suggest(self, trial_id: str):
        if self.issued >= self.limit or self.exhausted:
            self._drop_held()
            return Searcher.FINISHED
        refs = self.spec.references
        overrides, point, number = {}, {}, None
        if self.issued < len(refs):
            overrides = dict(refs[self.issued])
            self.refs[trial_id] = overrides
            self.study()  # open (and reconcile) first: it rebuilds what is known
            self._known.setdefault(config_key(self.spec.trial_config(overrides=overrides)), "running")
        else:
            if self._startup_running():
                return None  # Tune asks again when a trial finishes
            found = self._next_point()
            if found is None:
                self._drop_held()
                return Searcher.FINISHED
            number, point = found
            self.numbers[trial_id] = number
            running_trial(self.study(), number).set_user_attr("tune_trial", trial_id)
        self.issued += 1
        cfg = self.spec.trial_config(point, overrides)
        self.live[trial_id] = pretrain_id(cfg)
        return {"trial": cfg.to_flat(), "reference": bool(overrides)}

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False):
        self.live.pop(trial_id, None)
        if trial_id in self.refs:
            key = self._add_reference(trial_id, self.refs.pop(trial_id), None if error else result)
        elif trial_id in self.numbers:
            number = self.numbers[trial_id]
            key = self.study().trials[number].user_attrs.get("config_key")
            if not error and self._stopped(trial_id):
                self._tell_pruned(number)
            else:
                self._tell(number, None if error else result, collapsed=error and self._collapsed(trial_id))
        else:
            return
        for repeat in self.waiting.pop(key, []):
            self._tell_repeat(repeat, key)

    # -- the study -------------------------------------------------------------------------------
    def study(self):
        """The sweep's Optuna study, opened (and reconciled with this searcher's state) on first use."""
        if self._study is None:
            self._open()
        return self._study

    def _open(self) -> None:
        folder = Path(self.folder) if self.folder else None  # none: a searcher on its own, in tests
        self._study = open_study(folder, self.spec)
        trials = self._study.get_trials(deepcopy=False)
        ctx = SamplerContext(seed=self.spec.search_seed + len(trials), num_samples=self.limit,
                             n_references=len(self.spec.references), n_objectives=len(self.spec.objectives),
                             known=known_objectives(self.spec), applicable=self._space.applied,
                             measure=SizeProbe(self.spec))
        sampler = self.spec.sampler()
        self._study.sampler = sampler.build(ctx)
        self._startup = sampler.startup(ctx)
        keep = set(self.numbers.values()) | {n for n, _ in self.held} | {n for ns in self.waiting.values() for n in ns}
        close_stale(self._study, trials, keep)
        if not trials and folder is not None:  # a sweep made before the study file existed
            for cfg, metrics, reference, collapsed in results_rows(folder):
                self._add_finished(cfg, metrics, reference=reference, collapsed=collapsed)
        if sampler.enumerates and not trials:
            for point in self.spec.grid():
                self._study.enqueue_trial({n: optuna_value(self.spec.space[n], v) for n, v in point.items()})
        self._rebuild_known()

    def _rebuild_known(self) -> None:
        self._known, self._results, self._refs_told = known_from_study(self._study.get_trials(deepcopy=False),
                                                                       self.numbers)
        for overrides in self.refs.values():  # references issued, not finished: not in the study yet
            self._known.setdefault(config_key(self.spec.trial_config(overrides=overrides)), "running")

    # -- telling (what is told: .study.outcome) --------------------------------------------------
    def _tell(self, number: int, result, collapsed: bool = False):
        from optuna.trial import TrialState

        study = self.study()
        frozen = study.trials[number]
        key = frozen.user_attrs.get("config_key")
        if frozen.state.is_finished():  # told before a driver was killed; Tune reports it again on resume
            return None
        told = outcome(result, self.spec)
        if told is None:
            if collapsed:
                running_trial(study, number).set_user_attr("deterministic_failure", True)
                self._known[key] = "failed"
            else:
                self._known.pop(key, None)  # a failure that may not repeat: the configuration may run again
            study.tell(number, state=TrialState.FAIL)
            return None
        values, constraints = told
        set_constraints(study, number, constraints)
        study.tell(number, values)
        self._known[key] = "finished"
        self._results[key] = (values, constraints)
        return told

    def _tell_pruned(self, number: int) -> None:
        """Tell the study trial ``number`` was stopped early (unless told before a driver was killed)."""
        frozen = self.study().trials[number]
        if not frozen.state.is_finished():
            tell_pruned(self.study(), number)
        self._known[frozen.user_attrs.get("config_key")] = "early_stopped"

    def _tell_repeat(self, number: int, key: str) -> None:
        """Tell a repeated suggestion what its configuration's trial gave."""
        from optuna.trial import TrialState

        study = self.study()
        if self._known.get(key) == "early_stopped":
            tell_pruned(study, number)
        elif self._known.get(key) == "finished":
            values, constraints = self._results[key]
            set_constraints(study, number, constraints)
            study.tell(number, values)
        else:
            study.tell(number, state=TrialState.FAIL)

    def _add_reference(self, trial_id: str, overrides: dict, result) -> str:
        cfg = self.spec.trial_config(overrides=overrides)
        self.study()  # opened (a resumed searcher: _refs_told rebuilt from the journal) before it is read
        if config_key(cfg) in self._refs_told:  # told before a driver was killed; reported again on resume
            return config_key(cfg)
        self._add_finished(cfg, result, reference=True, collapsed=result is None and self._collapsed(trial_id))
        return config_key(cfg)

    def _add_finished(self, cfg, metrics, reference: bool, collapsed: bool = False) -> None:
        """Add a trial that ran outside the study (a reference, a row of an older sweep) to it."""
        key = config_key(cfg)
        attrs = {"config_key": key, "reference": reference, "config": cfg.to_flat()}
        told = outcome(metrics, self.spec)
        if told is None and collapsed:
            attrs["deterministic_failure"] = True
        self.study().add_trial(finished_trial(cfg, told, self.spec.space, attrs))
        if reference:
            self._refs_told.add(key)
        if told is not None:
            self._known[key] = "finished"
            self._results[key] = told
        elif collapsed:
            self._known[key] = "failed"
        else:
            self._known.pop(key, None)

    def _startup_running(self) -> bool:
        """Whether to wait for the references: one still runs, the sampler would draw this
        suggestion at random (it does until ``startup`` trials are complete), yet enough are in
        flight to complete its startup. Waiting lets the suggestion learn from the references (a
        dense adversarial reference pretrains for most of a digits sweep's first minute, and trials
        issued meanwhile were random draws beyond the startup the sampler was given). Only
        references are waited for: a searched startup trial is a random draw, and holding every
        other slot for one would idle a cluster for a whole trial."""
        from optuna.trial import TrialState

        if not self.refs:  # references issued and not finished (each also in self.live)
            return False
        study = self.study()  # opened first: it sets the sampler's startup
        n = self._startup
        if not n:
            return False
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        return done < n <= done + len(self.live)

    def _stopped(self, trial_id: str) -> bool:
        from .scheduler import stopped
        from .trainable import TRIALS_DIR

        return bool(self.folder) and stopped(Path(self.folder) / TRIALS_DIR / trial_id) is not None

    def _collapsed(self, trial_id: str) -> bool:
        from .trainable import COLLAPSED_FILE, TRIALS_DIR

        return bool(self.folder) and (Path(self.folder) / TRIALS_DIR / trial_id / COLLAPSED_FILE).is_file()

    # -- state (Tune saves and restores it; the study itself is in its journal) -------------------
    def get_state(self) -> dict:
        return {"issued": self.issued, "numbers": dict(self.numbers), "refs": dict(self.refs),
                "held": list(self.held), "live": dict(self.live), "waiting": {k: list(v) for k, v in self.waiting.items()},
                "repeats": self.repeats}

    def set_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self.exhausted = None  # found again if still so (a resumed sweep may extend or retry)
        self._study = None  # re-opened from the journal, reconciled with this state

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def __getstate__(self):  # Tune may pickle the searcher: the study is re-opened from its file
        state = dict(self.__dict__)
        state["_study"] = None
        return state


class SweepSearchGenerator(SearchGenerator):
    """Tune's searcher driver, except that a restored one is never 'finished' by its saved state:
    a sweep extended by ``resume --num-samples`` must ask the searcher again (which answers
    FINISHED once more if there is nothing left to run)."""

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False


def build_searcher(spec: SweepSpec) -> SweepSearchGenerator:
    """The searcher for ``spec`` (its sampler, seeded by ``search_seed``), at most
    ``max_concurrent`` trials at once."""
    return SweepSearchGenerator(ConcurrencyLimiter(SweepSearcher(spec), max_concurrent=spec.max_concurrent))
