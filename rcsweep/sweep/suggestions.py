"""Which suggestion the searcher (:mod:`.search`) issues next: no configuration twice, and none that
would only wait for a pretraining. A mixin of :class:`.search.SweepSearcher`, which holds the state
it reads and writes (``held``, ``live``, ``waiting``, ``repeats``, ``exhausted``, ``_known``) and
the study it asks (``study()``); the searcher's other half is the bookkeeping with Tune and the
study.

- **No configuration runs twice** (issue 15): a suggestion is keyed by its trial configuration
  (:func:`.identity.config_key`). One equal to a configuration that finished, failed
  deterministically (training collapse) or is running is not issued: it is told the finished
  trial's result (or failed, or told when the running one finishes) and the next suggestion is
  asked for, ``MAX_REPEATS`` times at most; then the configuration not yet run nearest to the last
  repeated suggestion is issued (:func:`.identity.nearest_unseen`: the sampler keeps asking for a
  region it has run; its closest unseen neighbour, from the space's points when the space is
  finite). A finite space whose every configuration has run ends the sweep early (``N distinct
  configurations, all run``, written to ``search.json``).
- **Lookahead**: a suggestion whose pretrained model a running trial is still training would only
  wait for it; up to ``LOOKAHEAD`` such suggestions are held back while one that can start at once
  is asked for. Held suggestions never issued are told failed (they never ran).
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

from .folder import SEARCH_FILE
from .identity import config_key, finite_config_keys, nearest_unseen
from .space import optuna_value
from .store import STORE_DIR, pretrain_id


class Suggestions:
    """The suggestion half of :class:`.search.SweepSearcher` (a mixin: no state of its own).

    ``LOOKAHEAD``: suggestions held back at most while one that can start at once is asked for;
    ``MAX_REPEATS``: repeated suggestions in a row before the nearest unseen configuration is issued.
    """

    LOOKAHEAD = 8
    MAX_REPEATS = 20  # repeated suggestions in a row before a random new configuration is issued

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
            self._finite = finite_config_keys(self.spec)
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
        sampler's last repeated suggestion ``near`` (:func:`.identity.nearest_unseen`: fewest
        parameters that differ, then the smallest move on their range), ties drawn at random
        (seeded), enqueued and asked for; None if none is left. The sampler kept asking for a region
        it has run: the next configuration is its closest neighbour not run, not a random one."""
        rng = random.Random(self.spec.search_seed * 1_000_003 + len(self._known))
        found = nearest_unseen(self.spec, self._known, near, rng, self.MAX_REPEATS, self._random_point)
        if found is None:
            return None
        point, cfg = found
        key = config_key(cfg)
        self.study().enqueue_trial({n: optuna_value(self.spec.space[n], v) for n, v in point.items()})
        trial = self.study().ask()
        drawn = self._space(trial)
        trial.set_user_attr("config_key", key)
        self._known[key] = "running"
        return trial.number, drawn

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
