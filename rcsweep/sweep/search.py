"""The sweep's Ray Tune searcher: references first, then the suggestions of an Optuna study that
lives in the sweep folder.

Why not Ray's ``OptunaSearch``: it cannot add the references (which lie outside the searched
choices) to the study, sets no constraints, has no notion of a repeated configuration and keeps
its study in Tune's pickled searcher state rather than in a file. rcsweep drives the study with
Optuna's own ask-and-tell interface (``Study.ask``/``Study.tell``/``Study.add_trial``), so
sampling stays Optuna's; what is written here is the bookkeeping between Tune's trials and the
study's, which no library does.

- **The study** is ``DIR/optuna.journal`` (Optuna's ``JournalStorage``, study name = the sweep's
  name): ``optuna-dashboard DIR/optuna.journal`` watches a sweep live. It is the one source of
  truth for what the sampler knows: after a SIGKILLed driver, the resumed searcher re-opens it, and
  trials the journal holds as running that Tune will not continue (asked after Tune's last state
  save) are closed as failed.
- **References** are run first; when one finishes it is added to the study as a completed trial
  with the parameters it shares with the space (a dense reference's ``pretrain``; its
  ``compression: none`` lies outside the searched choices, and a study whose distributions change
  between trials is refused by multivariate TPE), its objectives and its constraint values, and
  its whole configuration as a user attribute. TPE and GP count them as startup trials.
- **No configuration runs twice** (issue 15): a suggestion is keyed by its trial configuration
  (``SweepSpec.trial_config(point).to_flat()``: parameters that do not apply dropped, floats as
  drawn, on the space's ``step`` grid where it declares one; the seed is part of it). A suggestion
  equal to a configuration that finished, failed deterministically (training collapse) or is
  running is not issued: it is told the finished trial's result (or failed, or told when the
  running one finishes) and the next suggestion is asked for, ``MAX_REPEATS`` times at most; then
  the configuration not yet run nearest to the last repeated suggestion is issued (the sampler
  keeps asking for a region it has run: its closest unseen neighbour, from the space's points when
  the space is finite). A finite space whose every configuration has run ends the sweep early
  (``N distinct configurations, all run``).
- **What a finished trial tells** follows the table of statuses and flags
  (:mod:`rcsweep.trial_status`): its objectives (on the hypervolume's scale, :func:`told_value`:
  sizes as log10), with Optuna constraint values from the sweep's
  ``constraints`` and ``trusted`` (> 0 for suspect and degenerate trials: infeasible); a failed
  trial is told failed.
- **Lookahead**: a suggestion whose pretrained model a running trial is still training would only
  wait for it; up to ``LOOKAHEAD`` such suggestions are held back while one that can start at once
  is asked for. Held suggestions never issued are told failed (they never ran).
"""
from __future__ import annotations

import json
import math
import pickle
import random
import sys
from pathlib import Path

from ray.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher

from ..config import FIELD_NAMES, TrialConfig
from ..constraints import sampler_constraints
from ..errors import ConfigError
from ..samplers import SamplerContext
from ..sweepfile import SweepSpec
from ..trial_status import FLAGS, parse_flags
from .folder import SEARCH_FILE, search_exhausted  # noqa: F401  (search_exhausted lives there: status reads it without Ray)
from .space import ConditionalSpace, distribution, optuna_value
from .store import STORE_DIR, pretrain_id

STUDY_FILE = "optuna.journal"


def config_key(cfg) -> str:
    """The identity of a trial configuration: its flat parameters as sorted JSON."""
    return json.dumps(cfg.to_flat(), sort_keys=True, default=str)


def told_value(metric: str, value: float) -> float:
    """An objective's value as the study is told it: on the scale the hypervolume judges it
    (``rcsweep.pareto.LOG_COLUMNS``, from the metric table's ``scale``), so that a sampler's own hypervolume and
    crowding agree with the analysis. Sizes and costs (``log_dense``, ``log_ref``) are told as
    ``log10(value)``: a model 10x smaller gains as much at 1 Mbit as at 10 kbit (told raw, the
    smallest models' gains vanish next to the dense model's size). Others are told as they are.
    A non-positive size is told as -inf (not finite: the trial is told failed)."""
    from ..pareto import LOG_COLUMNS

    if metric in LOG_COLUMNS:
        return math.log10(value) if value > 0 else -math.inf
    return value


def open_study(folder, spec: SweepSpec, sampler=None):
    """The sweep's Optuna study from ``folder/optuna.journal`` (created if new), with ``sampler``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(Path(folder) / STUDY_FILE)))
    directions = ["maximize" if d == "max" else "minimize" for _, d in spec.objectives]
    return optuna.create_study(storage=storage, study_name=spec.name, directions=directions, sampler=sampler,
                               load_if_exists=True)


class SweepSearcher(Searcher):
    """References, then the study's suggestions, each configuration once.

    Args:
        spec: the validated sweep (references, space, fixed parameters, sampler, constraints).

    Attributes (for tests and ``rcsweep status``): ``repeats`` counts suggestions answered from an
    earlier trial instead of being run; ``exhausted`` is the reason the search ended early, or None.
    """

    LOOKAHEAD = 8
    MAX_REPEATS = 20  # repeated suggestions in a row before a random new configuration is issued

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
            found = self._next_point()
            if found is None:
                self._drop_held()
                return Searcher.FINISHED
            number, point = found
            self.numbers[trial_id] = number
            _running_trial(self.study(), number).set_user_attr("tune_trial", trial_id)
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
        folder = Path(self.folder) if self.folder else None
        if folder is None:  # no sweep folder (a searcher used on its own, in tests): in memory
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._study = optuna.create_study(directions=["maximize" if d == "max" else "minimize"
                                                          for _, d in self.spec.objectives])
        else:
            self._study = open_study(folder, self.spec)
        trials = self._study.get_trials(deepcopy=False)
        ctx = SamplerContext(seed=self.spec.search_seed + len(trials), num_samples=self.limit,
                             n_references=len(self.spec.references), n_objectives=len(self.spec.objectives))
        sampler = self.spec.sampler()
        self._study.sampler = sampler.build(ctx)
        self._close_stale(trials)
        if not trials and folder is not None:
            self._seed_from_results(folder)
        if sampler.enumerates and not trials:
            for point in self.spec.grid():
                self._study.enqueue_trial({n: optuna_value(self.spec.space[n], v) for n, v in point.items()})
        self._rebuild_known()

    def _close_stale(self, trials) -> None:
        """Fail the trials the journal holds as running that nothing here will finish: asked after
        Tune's last state save by a driver that was then killed."""
        from optuna.trial import TrialState

        keep = set(self.numbers.values()) | {n for n, _ in self.held} | {n for ns in self.waiting.values() for n in ns}
        for t in trials:
            if t.state == TrialState.RUNNING and t.number not in keep:
                self._study.tell(t.number, state=TrialState.FAIL)

    def _seed_from_results(self, folder: Path) -> None:
        """A sweep made before the study file existed: tell the study every trial results.csv holds."""
        from ..results import RESULTS_FILE, load_results

        if not (folder / RESULTS_FILE).is_file():
            return
        table = load_results(folder)
        for _, row in table.iterrows():
            if row["status"] not in ("finished", "failed"):
                continue
            flat = {k: row[k] for k in table.columns if k in FIELD_NAMES and _present(row[k])}
            try:
                cfg = TrialConfig.from_flat(flat)
            except ConfigError:  # a row this rcsweep cannot read back is not told
                continue
            metrics = {k: row[k] for k in table.columns if _present(row[k])}
            self._add_finished(cfg, metrics if row["status"] == "finished" else None, reference=bool(row.get("is_reference")),
                               collapsed="collapsed" in parse_flags(row.get("flags")))

    def _rebuild_known(self) -> None:
        from optuna.trial import TrialState

        self._known, self._results = {}, {}
        self._refs_told = {t.user_attrs.get("config_key") for t in self._study.get_trials(deepcopy=False)
                           if t.user_attrs.get("reference")}
        for t in self._study.get_trials(deepcopy=False):
            key = t.user_attrs.get("config_key")
            if key is None or t.user_attrs.get("repeat_of") is not None:
                continue
            issued_by = t.user_attrs.get("tune_trial")
            if issued_by is not None and issued_by not in self.numbers:
                # issued after Tune's last state save by a driver then killed: the runner sets its
                # trial aside, so its configuration may run again (the sampler keeps its values)
                continue
            if t.state == TrialState.COMPLETE:
                self._known[key] = "finished"
                self._results[key] = (list(t.values), dict(t.constraints or {}))
            elif t.state == TrialState.FAIL and t.user_attrs.get("deterministic_failure"):
                self._known.setdefault(key, "failed")
            elif t.state == TrialState.RUNNING:
                self._known.setdefault(key, "running")
        for overrides in self.refs.values():  # references issued, not finished: not in the study yet
            self._known.setdefault(config_key(self.spec.trial_config(overrides=overrides)), "running")

    # -- suggestions -----------------------------------------------------------------------------
    def _next_point(self):
        """(number, point) of the oldest held or new suggestion that would not wait for a
        pretraining; else the oldest; None when the space is exhausted."""
        while True:
            for i, (_, point) in enumerate(self.held):
                if not self._would_wait(point):
                    return self.held.pop(i)
            if len(self.held) > self.LOOKAHEAD or (self.held and self._all_known()):
                return self.held.pop(0)
            found = None if self._all_known() else self._ask_new()
            if found is None:
                if self.held:
                    return self.held.pop(0)
                points = self._finite_keys()
                self.exhausted = (f"{len(points)} distinct configurations, all run" if self._all_known() else
                                  f"no new configuration in {2 * self.MAX_REPEATS} suggestions")
                self._record_exhausted()
                return None
            self.held.append(found)

    def _finite_keys(self) -> set | None:
        """The configuration keys of every point of a finite space (None: the space is not finite)."""
        if not hasattr(self, "_finite"):
            points = self.spec.finite_points()
            self._finite = None if points is None else {config_key(self.spec.trial_config(p)) for p in points}
        return self._finite

    def _all_known(self) -> bool:
        """Whether every configuration of a finite space has run, is running or is held."""
        keys = self._finite_keys()
        self.study()  # the known configurations come from the study
        return keys is not None and keys <= self._known.keys()

    def _ask_new(self):
        """A suggestion whose configuration has not run and is not running; None if none is left."""
        study = self.study()
        repeated = None
        for _ in range(self.MAX_REPEATS):
            trial = study.ask()
            point = self._space(trial)
            key = config_key(self.spec.trial_config(point))
            trial.set_user_attr("config_key", key)
            state = self._known.get(key)
            if state is None:
                self._known[key] = "running"
                return trial.number, point
            self.repeats += 1
            repeated = point
            trial.set_user_attr("repeat_of", key)
            if state == "running":
                self.waiting.setdefault(key, []).append(trial.number)
            else:
                self._tell_repeat(trial.number, key)
        return self._ask_unseen(near=repeated)

    def _ask_unseen(self, near: dict | None = None):
        """After ``MAX_REPEATS`` repeats: the configuration not run yet that is nearest to the
        sampler's last repeated suggestion ``near`` (fewest parameters of the trial configuration
        that differ, then the smallest distance of numeric ones on their range), ties drawn at
        random (seeded); among all of a finite space's points, else among ``MAX_REPEATS`` random
        draws. The sampler kept asking for a region it has run: the next configuration is its
        closest neighbour not run, not a random one."""
        rng = random.Random(self.spec.search_seed * 1_000_003 + len(self._known))
        points = self.spec.finite_points()
        if points is None:
            points = [self._random_point(rng) for _ in range(self.MAX_REPEATS)]
        fresh = [(p, cfg) for p, cfg in ((p, self.spec.trial_config(p)) for p in points)
                 if config_key(cfg) not in self._known]
        if not fresh:
            return None
        if near is not None:
            target = self.spec.trial_config(near).to_flat()
            dist = [self._distance(cfg.to_flat(), target) for _, cfg in fresh]
            best = min(dist)
            fresh = [pc for pc, d in zip(fresh, dist) if d == best]
        point, cfg = rng.choice(fresh)
        key = config_key(cfg)
        self.study().enqueue_trial({n: optuna_value(self.spec.space[n], v) for n, v in point.items()})
        trial = self.study().ask()
        drawn = self._space(trial)
        trial.set_user_attr("config_key", key)
        self._known[key] = "running"
        return trial.number, drawn

    def _distance(self, a: dict, b: dict) -> tuple:
        """(parameters that differ, the size of the move): a numeric parameter moves by
        |difference| / its range in the space, any other change counts 1 (a whole range), so
        that a neighbour one step along a numeric axis comes before one with another method."""
        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        differ = [k for k in a.keys() | b.keys() if a.get(k) != b.get(k)]
        move = 0.0
        for k in differ:
            dist = self.spec.space.get(k)
            if dist is not None and number(a.get(k)) and number(b.get(k)) and all(map(number, dist.values)):
                lo, hi = min(dist.values), max(dist.values)
                move += abs(a[k] - b[k]) / ((hi - lo) or 1)
            else:
                move += 1.0
        return len(differ), round(move, 12)

    def _random_point(self, rng: random.Random) -> dict:
        import optuna

        scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng.randrange(2**31)))
        return self._space(scratch.ask())

    def _would_wait(self, point: dict) -> bool:
        key = pretrain_id(self.spec.trial_config(point))
        ready = self.folder is not None and (Path(self.folder) / STORE_DIR / key / "pretrain.json").is_file()
        return not ready and key in self.live.values()

    def _drop_held(self) -> None:
        """Suggestions asked for but never run (the sweep reached its budget): told failed."""
        from optuna.trial import TrialState

        for number, point in self.held:
            key = config_key(self.spec.trial_config(point))
            self._known.pop(key, None)
            for n in [number, *self.waiting.pop(key, [])]:
                self.study().tell(n, state=TrialState.FAIL)
        self.held = []

    def _record_exhausted(self) -> None:
        print(f"rcsweep: search ended early: {self.exhausted}", file=sys.stderr)
        if self.folder:
            from ..fileio import atomic_write_json

            atomic_write_json(Path(self.folder) / SEARCH_FILE, {"exhausted": self.exhausted})

    # -- telling ---------------------------------------------------------------------------------
    def _outcome(self, result):
        """(values, constraints) to tell for a trial's final report, or None for a failure."""
        if result is None:
            return None
        flags = parse_flags(result.get("flags"))
        if any(FLAGS[f].sampler in ("failed", "not told") for f in flags if f in FLAGS):
            return None
        try:
            values = [told_value(m, float(result[m])) for m, _ in self.spec.objectives]
        except (KeyError, TypeError, ValueError):
            return None
        if not all(math.isfinite(v) for v in values):
            return None
        return values, sampler_constraints(result, self.spec.constraints, flags)

    def _tell(self, number: int, result, collapsed: bool = False):
        from optuna.trial import TrialState

        study = self.study()
        frozen = study.trials[number]
        key = frozen.user_attrs.get("config_key")
        if frozen.state.is_finished():  # told before a driver was killed; Tune reports it again on resume
            return None
        outcome = self._outcome(result)
        if outcome is None:
            if collapsed:
                _running_trial(study, number).set_user_attr("deterministic_failure", True)
                self._known[key] = "failed"
            else:
                self._known.pop(key, None)  # a failure that may not repeat: the configuration may run again
            study.tell(number, state=TrialState.FAIL)
            return None
        values, constraints = outcome
        _set_constraints(study, number, constraints)
        study.tell(number, values)
        self._known[key] = "finished"
        self._results[key] = (values, constraints)
        return outcome

    def _tell_repeat(self, number: int, key: str) -> None:
        """Tell a repeated suggestion what its configuration's trial gave."""
        from optuna.trial import TrialState

        study = self.study()
        if self._known.get(key) == "finished":
            values, constraints = self._results[key]
            _set_constraints(study, number, constraints)
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
        import optuna
        from optuna.trial import TrialState

        flat = cfg.to_flat()
        params, dists = {}, {}
        for name, dist in self.spec.space.items():  # the parameters it shares with the space
            if name in flat and _inside(dist, flat[name]):
                params[name] = optuna_value(dist, _tuple(flat[name]))
                dists[name] = distribution(dist)
        key = config_key(cfg)
        attrs = {"config_key": key, "reference": reference, "config": flat}
        outcome = self._outcome(metrics)
        if outcome is None:
            if collapsed:
                attrs["deterministic_failure"] = True
            trial = optuna.trial.create_trial(state=TrialState.FAIL, params=params, distributions=dists, user_attrs=attrs)
        else:
            values, constraints = outcome
            trial = optuna.trial.create_trial(values=values, params=params, distributions=dists, user_attrs=attrs,
                                              constraints=constraints)
        self.study().add_trial(trial)
        if reference:
            self._refs_told.add(key)
        if outcome is not None:
            self._known[key] = "finished"
            self._results[key] = outcome
        elif collapsed:
            self._known[key] = "failed"
        else:
            self._known.pop(key, None)

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


def _running_trial(study, number: int):
    """The running trial ``number`` of ``study`` as an ``optuna.Trial`` (what ``Study.ask`` returned)."""
    import optuna

    return optuna.Trial(study, study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def _set_constraints(study, number: int, constraints: dict) -> None:
    """Optuna 5's constraint values of a running trial (``Trial.set_constraint``)."""
    trial = _running_trial(study, number)
    for name, value in constraints.items():
        trial.set_constraint(name, value)


def _inside(dist, value) -> bool:
    if dist.kind == "choice":
        return _tuple(value) in [_tuple(v) for v in dist.values]
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    lo, hi = dist.values
    if not lo <= v <= hi:
        return False
    if dist.step is not None:
        k = (v - lo) / dist.step
        return abs(k - round(k)) < 1e-9
    return dist.kind != "int" or float(v).is_integer()


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


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
