"""The sweep's Optuna study: where it lives, what a finished trial tells it, and what a resumed
searcher reads back from it. Functions of a study and a sweep; the searcher (:mod:`.search`) holds
the state that links them to Tune's trials.

- **The study** is ``DIR/optuna.journal`` (Optuna's ``JournalStorage``, study name = the sweep's
  name; :func:`open_study`): ``optuna-dashboard DIR/optuna.journal`` watches a sweep live. It is the
  one source of truth for what the sampler knows: after a SIGKILLed driver, the resumed searcher
  re-opens it, rebuilds which configurations finished, failed or run (:func:`known_from_study`),
  and closes as failed the trials the journal holds as running that Tune will not continue (asked
  after Tune's last state save; :func:`close_stale`). A sweep made before the study file existed is
  told every row of its results.csv (:func:`results_rows`).
- **What a finished trial tells** follows the table of statuses and flags
  (:mod:`rcsweep.trial_status`; :func:`outcome`): its objectives (on the hypervolume's scale,
  :func:`told_value`: sizes as log10), with Optuna constraint values from the sweep's
  ``constraints`` and ``trusted`` (> 0 for suspect and degenerate trials: infeasible); a failed
  trial is told failed; a trial stopped early is told pruned (:func:`tell_pruned`).
- **Trials that ran outside the study** (references, rows of an older sweep) are added as
  completed trials (:func:`finished_trial`) with the parameters they share with the space (a dense
  reference's ``pretrain``; its ``compression: none`` lies outside the searched choices, and a
  study whose distributions change between trials is refused by multivariate TPE), and their whole
  configuration as a user attribute.
- **What a sampler may know before a trial trains**: its sizes, measured on an untrained
  compressed copy and told on the study's scale (:class:`SizeProbe`, ``SamplerContext.measure``).
"""
from __future__ import annotations

import math
from pathlib import Path

from ..config import TrialConfig
from ..constraints import sampler_constraints
from ..errors import ConfigError, UserError
from ..metrics_table import missing
from ..sweepfile import SweepSpec
from ..trial_status import FLAGS, parse_flags
from .space import KNOWN_BEFORE_TRAINING, distribution, from_optuna, optuna_value

STUDY_FILE = "optuna.journal"


def open_study(folder, spec: SweepSpec, sampler=None):
    """The sweep's Optuna study from ``folder/optuna.journal`` (created if new), with ``sampler``;
    ``folder`` None: a new study in memory (a searcher used on its own, in tests)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if d == "max" else "minimize" for _, d in spec.objectives]
    if folder is None:
        return optuna.create_study(directions=directions, sampler=sampler)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(Path(folder) / STUDY_FILE)))
    return optuna.create_study(storage=storage, study_name=spec.name, directions=directions, sampler=sampler,
                               load_if_exists=True)


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


def outcome(result, spec: SweepSpec):
    """(values, constraints) to tell for a trial's final report ``result`` (a dict of metrics and
    ``flags``), or None for a failure."""
    if result is None:
        return None
    flags = parse_flags(result.get("flags"))
    if any(FLAGS[f].sampler in ("failed", "not told") for f in flags if f in FLAGS):
        return None
    try:
        values = [told_value(m, float(result[m])) for m, _ in spec.objectives]
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    return values, sampler_constraints(result, spec.constraints, flags)


def tell_pruned(study, number: int) -> None:
    """Tell ``study`` that its running trial ``number`` was stopped early at a rung (issue 16): as
    Optuna's ``PRUNED``, with no values.

    Why pruned rather than the trial's rung values: the rung values are not what the objectives
    measure (a screening PGD on val after part of the fine-tuning, on the compressed model), and a
    study told them as COMPLETE would hold them on its own Pareto front and feed NSGA-II's
    populations and GP's regression with numbers from another measurement. Pruned, each sampler
    uses it as it is built to: TPE (Optuna 5) counts pruned trials among its observations and puts
    them in its "above" (bad) group behind every complete trial, which is what a stop means (this
    region did not reach the front); NSGA-II and GP leave them out rather than learn a wrong value.
    Optuna's multi-objective studies take no intermediate values (``Trial.report`` refuses them), so
    none are reported; the rung and its screening are in results.csv."""
    from optuna.trial import TrialState

    running_trial(study, number).set_user_attr("early_stopped", True)
    study.tell(number, state=TrialState.PRUNED)


def running_trial(study, number: int):
    """The running trial ``number`` of ``study`` as an ``optuna.Trial`` (what ``Study.ask`` returned)."""
    import optuna

    return optuna.Trial(study, study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def set_constraints(study, number: int, constraints: dict) -> None:
    """Optuna 5's constraint values of a running trial (``Trial.set_constraint``)."""
    trial = running_trial(study, number)
    for name, value in constraints.items():
        trial.set_constraint(name, value)


def close_stale(study, trials, keep: set) -> None:
    """Fail the ``trials`` the journal holds as running that nothing will finish (their numbers not in
    ``keep``): asked after Tune's last state save by a driver that was then killed."""
    from optuna.trial import TrialState

    for t in trials:
        if t.state == TrialState.RUNNING and t.number not in keep:
            study.tell(t.number, state=TrialState.FAIL)


def known_from_study(trials, issued) -> tuple[dict, dict, set]:
    """What the study's ``trials`` say of each configuration: ``(known, results, refs_told)``, config
    key -> "finished" | "failed" (deterministically: training collapse) | "early_stopped" (pruned) |
    "running", config key ->
    (values, constraints) of a finished trial, and the config keys of references told. ``issued``:
    the Tune trial ids the searcher issued (a trial issued by another is not counted)."""
    from optuna.trial import TrialState

    known, results = {}, {}
    refs_told = {t.user_attrs.get("config_key") for t in trials if t.user_attrs.get("reference")}
    for t in trials:
        key = t.user_attrs.get("config_key")
        if key is None or t.user_attrs.get("repeat_of") is not None:
            continue
        issued_by = t.user_attrs.get("tune_trial")
        if issued_by is not None and issued_by not in issued:
            # issued after Tune's last state save by a driver then killed: the runner sets its
            # trial aside, so its configuration may run again (the sampler keeps its values)
            continue
        if t.state == TrialState.COMPLETE:
            known[key] = "finished"
            results[key] = (list(t.values), dict(t.constraints or {}))
        elif t.state == TrialState.PRUNED:
            known.setdefault(key, "early_stopped")
        elif t.state == TrialState.FAIL and t.user_attrs.get("deterministic_failure"):
            known.setdefault(key, "failed")
        elif t.state == TrialState.RUNNING:
            known.setdefault(key, "running")
    return known, results, refs_told


def results_rows(folder: Path):
    """``(cfg, metrics, reference, collapsed)`` for each finished or failed row of
    ``folder/results.csv`` (none without one); ``metrics`` None for a failed row. A row this
    rcsweep cannot read back is skipped."""
    from ..results import RESULTS_FILE, load_results

    if not (folder / RESULTS_FILE).is_file():
        return
    table = load_results(folder)
    for _, row in table.iterrows():
        if row["status"] not in ("finished", "failed"):
            continue
        try:
            cfg = TrialConfig.from_row(row)
        except ConfigError:  # a row this rcsweep cannot read back is not told
            continue
        metrics = {k: row[k] for k in table.columns if not missing(row[k])}
        yield (cfg, metrics if row["status"] == "finished" else None, bool(row.get("is_reference")),
               "collapsed" in parse_flags(row.get("flags")))


def finished_trial(cfg, told, space: dict, attrs: dict):
    """An ``optuna`` trial for ``cfg``, which ran outside the study: completed with ``told``
    (:func:`outcome`'s (values, constraints)), or failed when it is None; its parameters are those
    it shares with ``space`` (name -> ``Dist``), ``attrs`` its user attributes."""
    import optuna
    from optuna.trial import TrialState

    flat = cfg.to_flat()
    params, dists = {}, {}
    for name, dist in space.items():
        if name in flat and _inside(dist, flat[name]):
            params[name] = optuna_value(dist, _tuple(flat[name]))
            dists[name] = distribution(dist)
    if told is None:
        return optuna.trial.create_trial(state=TrialState.FAIL, params=params, distributions=dists, user_attrs=attrs)
    values, constraints = told
    return optuna.trial.create_trial(values=values, params=params, distributions=dists, user_attrs=attrs,
                                     constraints=constraints)


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


class SizeProbe:
    """``probe(params) -> {objective index: value as the study is told it}``: the sweep's size
    objectives (``KNOWN_BEFORE_TRAINING`` "compression": ``model_bits``, ``params``, ``bops``, ...)
    of a study trial's parameters, measured on an untrained compressed copy
    (:func:`rcsweep.pipeline.sizes_before_training`; no data read), cached per model and
    compression. It runs in the sweep's driver: about 20 ms a configuration for digits' net, 0.4 to
    1.7 s for CIFAR-10's ResNet-18 on a busy 2-core CPU, and in a continuous space (each sparsity
    new) a ``tpe_front`` suggestion may measure up to its ``n_candidates`` proposals. {} for a sweep
    without a size objective, and for a configuration that cannot be built or compressed (its trial
    then fails with its own message).
    ``SamplerContext.measure`` for samplers that rank proposals by what they would add
    (``tpe_front``), so that a size no trial has measured is known, not guessed."""

    def __init__(self, spec: SweepSpec):
        from ..compress_params import trial_params

        self.spec = spec
        self.objectives = {j: m for j, (m, _) in enumerate(spec.objectives)
                           if KNOWN_BEFORE_TRAINING.get(m) == "compression"}
        self._fields = ("model", "dataset", "width", "compression", *trial_params())
        self._cache: dict = {}

    def __call__(self, params: dict) -> dict:
        if not self.objectives:
            return {}
        from ..pipeline import sizes_before_training

        try:
            cfg = self.spec.trial_config({n: from_optuna(self.spec.space[n], v) for n, v in params.items()
                                          if n in self.spec.space})
        except ConfigError:
            return {}
        flat = cfg.to_flat()
        key = tuple(str(flat.get(f)) for f in self._fields)
        if key not in self._cache:
            try:
                sizes = sizes_before_training(cfg)
                self._cache[key] = {j: told_value(m, sizes[m]) for j, m in self.objectives.items()}
            except (ConfigError, UserError, ValueError, RuntimeError):
                self._cache[key] = {}
        return dict(self._cache[key])
