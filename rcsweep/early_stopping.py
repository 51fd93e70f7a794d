"""The sweep file's ``early_stopping`` section (issue 16): rungs, eta, the statistical margin and the
screening measurement, validated against the sweep. Torch- and Ray-free (``rcsweep validate``).

``early_stopping: {rungs: [0, 1, 3], eta: 3}`` (off by default) stops trials that a cheap look
shows cannot reach the front before they pay for the rest of their fine-tuning and their final
evaluation. The decision is :func:`rcsweep.rungs.decide`; the measurement :mod:`rcsweep.screening`;
the Ray Tune scheduler :mod:`rcsweep.sweep.scheduler`.

Fields (defaults in brackets):

- ``rungs``: strictly increasing fine-tuning epochs ``>= 0`` at which trials are compared; rung 0 is
  the compressed model before fine-tuning (pretraining is shared and is never a rung). Each rung is
  at most the sweep's largest ``finetune_epochs`` (fixed, the space's largest, else the default 3). A
  trial skips the rungs beyond its own fine-tuning (a ``finetune: none`` trial has only rung 0).
- ``eta`` [3]: an integer ``>= 2``; a trial continues past a rung when it is in the top 1/eta of the
  rung's points (Li et al. 2020, asynchronous successive halving).
- ``margin_se`` [2.0]: a trial is dominated only by a point better by more than this many binomial
  standard errors (of the difference of two screening accuracies) in every accuracy objective.
- ``screen_size`` [512]: images of ``val`` screened (its first ``min(screen_size, len(val))``).
- ``screen_steps`` [10]: PGD steps of the screening attack (at ``eps_eval``, one restart).
- ``screen_seed`` [0]: the screening attack's random start.
- ``stop`` [true]: ``false`` screens and records every rung (``screen_history``) without stopping
  any trial, for ``rcsweep replay`` (issue 16, item 6).

**A grid search is refused with ``stop: true``** (``search: grid`` with ``stop: false`` is allowed):
a grid exists to measure every point of a finite space, which stopping would leave with holes; and
asynchronous successive halving decides on the points that arrived first, which in a grid are the
sweep file's first values, all of one pretraining, not a sample of the space. Record a grid with
``stop: false`` and replay it.

**Searched ``finetune_epochs``** (issue 16, item 5): fine-tuning's learning rate is cosine over the
trial's own total, so epoch 1 of 3 and epoch 1 of 9 are different schedules. Rather than change the
schedule while early stopping is on (the trials would then not be the trials a sweep without it
runs), a rung compares only trials with the same ``finetune_epochs``: a rung of 3-epoch trials
and one of 9-epoch trials fill and decide separately (rung 0 too: where a cost that grows with the
epochs is an objective, pooling it would rank a trial by its projected cost alone). The trials
compared also share their compression method (:func:`rcsweep.rungs.group_key`): before
fine-tuning has repaired them, a pruned model and a quantized one of the same size are not
comparable. Fine-tuning methods share rungs (the same compressed model at rung 0, the same schedule
after it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import ConfigError, section_keys
from .metrics_table import AT_RUNG


@dataclass(frozen=True)
class EarlyStopping:
    """A validated ``early_stopping`` section (see the module docstring for the fields)."""
    rungs: tuple = field(default_factory=tuple)
    eta: int = 3
    margin_se: float = 2.0
    screen_size: int = 512
    screen_steps: int = 10
    screen_seed: int = 0
    stop: bool = True

    def __post_init__(self):
        rungs = self.rungs
        if not isinstance(rungs, (list, tuple)) or not rungs:
            raise ConfigError("early_stopping.rungs", f"must be a non-empty list of fine-tuning epochs, got {rungs!r}")
        for r in rungs:
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                raise ConfigError("early_stopping.rungs", f"entries are fine-tuning epochs (integers >= 0), got {r!r}")
        if any(b <= a for a, b in zip(rungs, rungs[1:])):
            raise ConfigError("early_stopping.rungs", f"must be strictly increasing, got {list(rungs)}")
        object.__setattr__(self, "rungs", tuple(rungs))
        _int("eta", self.eta, 2)
        _int("screen_size", self.screen_size, 1)
        _int("screen_steps", self.screen_steps, 1)
        _int("screen_seed", self.screen_seed, 0)
        m = self.margin_se
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < float("inf"):
            raise ConfigError("early_stopping.margin_se", f"must be a finite number >= 0, got {m!r}")
        if not isinstance(self.stop, bool):
            raise ConfigError("early_stopping.stop", f"expected true or false, got {self.stop!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["rungs"] = list(self.rungs)
        return d


FIELDS = tuple(f.name for f in dataclasses.fields(EarlyStopping))


def _int(name: str, v, minimum: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"early_stopping.{name}", f"expected an integer, got {v!r}")
    if v < minimum:
        raise ConfigError(f"early_stopping.{name}", f"must be >= {minimum}, got {v}")


def most_finetune_epochs(fixed: dict, space: dict) -> int:
    """The most fine-tuning epochs a trial of a sweep can have: ``fixed``'s, the largest value of
    ``space``'s (name -> ``rcsweep.sweepfile.Dist``), else :class:`~rcsweep.config.TrialConfig`'s default;
    0 when no trial fine-tunes."""
    from .config import TrialConfig

    if fixed.get("finetune", "none") == "none" and "finetune" not in space:
        return 0  # nothing fine-tunes: rung 0 only
    d = space.get("finetune_epochs")
    if d is not None:
        return int(max(d.values))
    return int(fixed.get("finetune_epochs") or TrialConfig(finetune="clean").finetune_epochs)


def parse_early_stopping(v, *, search: str, objectives, fixed: dict, space: dict) -> EarlyStopping | None:
    """The ``early_stopping`` section (None: off), checked against the sweep.

    ``search``: the sampler's name (``grid`` refuses ``stop: true``, see the module docstring);
    ``objectives``: the sweep's ``(metric, direction)`` pairs, each of which needs a value at a rung
    (:data:`rcsweep.metrics_table.AT_RUNG`); ``fixed``, ``space``: the sweep's, for the most
    fine-tuning epochs a trial can have (:func:`most_finetune_epochs`; rungs above it are refused).
    Raises :class:`ConfigError` naming the field (``early_stopping.eta: must be >= 2, got 1``)."""
    if v is None:
        return None
    section_keys(v, "early_stopping", FIELDS, "{rungs: [0, 1, 3], eta: 3}")
    if "rungs" not in v:
        raise ConfigError("early_stopping.rungs", "is missing: early_stopping: {rungs: [0, 1, 3], eta: 3}")
    es = EarlyStopping(**v)
    max_finetune_epochs = most_finetune_epochs(fixed, space)
    beyond = [r for r in es.rungs if r > max_finetune_epochs]
    if beyond:
        raise ConfigError("early_stopping.rungs", f"rung {beyond[0]} is beyond the sweep's fine-tuning epochs "
                                                  f"(at most {max_finetune_epochs})")
    if es.stop and search == "grid":
        raise ConfigError("early_stopping", "a grid search measures every point; stopping would leave holes in it "
                                            "(use stop: false to record the screening and 'rcsweep replay' it)")
    missing = [m for m, _ in objectives if m not in AT_RUNG]
    if missing:
        raise ConfigError("early_stopping", f"objective {missing[0]} has no value at a rung; rungs compare "
                                            f"{', '.join(AT_RUNG)}")
    return es
