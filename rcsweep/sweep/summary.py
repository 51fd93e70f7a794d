"""What a sweep would run, how far it got, and its Pareto set, as text. No Ray: ``rcsweep status``
reads ``results.csv`` while the sweep runs, and ``rcsweep validate`` runs nothing."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import TrialConfig
from ..errors import UserError
from ..pareto import front_order, gains, hypervolume, normalisation_text, parse_objectives, reference_values
from ..results import RESULTS_FILE, load_results, split_usable
from ..rungs import TOO_FEW, stopped_summary
from ..sweepfile import SweepSpec
from .folder import ES_STATE_FILE, driver_alive, read_driver, read_spec, search_exhausted
from .store import pretrain_id

SHOWN_PARAMS = ("pretrain", "compression", "sparsity", "weight_bits", "act_bits", "finetune")


@dataclass
class Status:
    folder: Path
    spec: SweepSpec
    counts: dict  # status -> number of trials
    driver: str  # running | stopped | unknown (another host)
    table: object  # pandas DataFrame of results.csv
    exhausted: str | None = None  # why the search ended before the budget (search.json), or None

    @property
    def planned(self) -> int:
        return self.spec.total_trials()

    @property
    def complete(self) -> bool:
        """Every planned trial finished (or was stopped early), or the search ran every configuration and none is running."""
        done = self.counts.get("finished", 0) + self.counts.get("early_stopped", 0)  # a stopped trial is done
        return done == self.planned or (self.exhausted is not None
                                                                  and not self.counts.get("running"))


def sweep_status(folder) -> Status:
    """Trials and their states from ``folder/results.csv`` (works while the sweep runs)."""
    folder = Path(folder).resolve()
    spec = read_spec(folder)
    table = load_results(folder) if (folder / RESULTS_FILE).is_file() else None
    counts = table["status"].value_counts().to_dict() if table is not None else {}
    alive = driver_alive(read_driver(folder))
    return Status(folder, spec, counts, {True: "running", False: "stopped", None: "unknown"}[alive], table,
                  search_exhausted(folder))


def _stage_shown(folder, row) -> str:
    """The status table's ``stage``: how far a running trial got, the rung an early-stopped one reached."""
    if row["status"] == "running":
        return last_stage(folder, row["trial_id"])
    if row["status"] == "early_stopped" and row.get("screen_rung") is not None and row["screen_rung"] == row["screen_rung"]:
        return f"stopped at rung {int(row['screen_rung'])}"
    return ""


def _nothing_stopped(st: Status) -> str:
    """Why an early-stopping sweep has stopped nothing yet, from the scheduler's state file: how many
    rung looks waited for points (a rung decides only once it holds eta + 1 points of one group)."""
    es = st.spec.early_stopping
    try:
        state = json.loads((Path(st.folder) / ES_STATE_FILE).read_text())
    except (OSError, ValueError):
        state = {}
    looks = [p.get("decision") or {} for points in state.values() for p in points]
    waited = sum(str(d.get("reason", "")).endswith(TOO_FEW) for d in looks)
    return (f"none stopped; {len(looks)} rung looks in {len(state)} rungs, {waited} of them too early to decide "
            f"(a rung decides once it holds eta + 1 = {es.eta + 1} points of trials with the same compression "
            f"and fine-tuning epochs)")


def _recorded_only(st: Status) -> str:
    """What a ``stop: false`` sweep's screening holds: rungs screened and recorded, none stopped."""
    histories = st.table["screen_history"] if st.table is not None and "screen_history" in st.table else []
    looks = sum(len(h) for h in histories if isinstance(h, list))
    return (f"stop: false: {looks} rung screenings recorded (rungs {list(st.spec.early_stopping.rungs)}), none "
            f"stopped; 'rcsweep replay {st.folder}' shows what stopping would have done")


def format_status(st: Status) -> str:
    state = st.driver if st.driver != "stopped" else ("complete" if st.complete else "stopped")
    early = st.counts.get("early_stopped", 0)
    lines = [f"sweep {st.spec.name} in {st.folder} ({state})",
             f"trials: {st.counts.get('finished', 0)} finished, " + (f"{early} stopped early, " if early else "")
             + f"{st.counts.get('running', 0)} running, {st.counts.get('failed', 0)} failed, of {st.planned} planned"]
    stopped = stopped_summary(st.table)
    if stopped:
        lines.append(f"early stopping: {stopped}")
    elif st.spec.early_stopping is not None and not st.spec.early_stopping.stop:
        lines.append(f"early stopping: {_recorded_only(st)}")
    elif st.spec.early_stopping is not None:
        lines.append(f"early stopping: {_nothing_stopped(st)}")
    if st.exhausted:
        lines.append(f"search ended early: {st.exhausted}")
    flagged = _flagged(st.table)
    if flagged:  # which trials, so a user need not search results.csv for them
        lines.append("flagged (off the front): " + ", ".join(_flag_text(f, ids) for f, ids in flagged.items()))
    if st.driver != "running" and st.counts.get("running"):
        lines.append(f"  the driver is not running: 'rcsweep resume {st.folder}' continues the unfinished trials")
    elif state == "stopped":  # ended (a crash, a kill, Ctrl-C) between trials, before its budget
        lines.append(f"  the driver stopped before the sweep was complete: 'rcsweep resume {st.folder}' runs the "
                     f"trials still planned")
    if st.table is not None and len(st.table):
        cols = ["trial_id", "status", *SHOWN_PARAMS, *(m for m, _ in st.spec.objectives)]
        table = st.table.assign(stage=[_stage_shown(st.folder, r) for _, r in st.table.iterrows()])
        shown = cols + ["stage"] if st.counts.get("running") or st.counts.get("early_stopped") else cols
        lines.append(_frame(table[[c for c in shown if c in table]]))
        front, usable = front_and_usable(st.table, st.spec.objectives)
        if len(front):
            lines.append(front_line(front, usable, st.spec.objectives))
            lines.append(_frame(front[[c for c in cols if c in front]]))
        failed = st.table[st.table["status"] == "failed"]
        for _, r in failed.iterrows():
            lines.append(f"failed {r['trial_id']}: {r['error']}")
    return "\n".join(lines)


def _flagged(table) -> dict:
    """Finished trials (their ids) per flag that keeps a trial off the front (rcsweep.trial_status)."""
    from ..trial_status import excluding_flags

    out: dict = {}
    if table is None:
        return out
    for _, r in table[table["status"] == "finished"].iterrows():
        for f in excluding_flags(r):
            out.setdefault(f, []).append(str(r["trial_id"]))
    return out


def _flag_text(flag: str, ids: list, most: int = 5) -> str:
    """``'2 suspect (ab12cd34, ef56ab78)'``: a flag's count and its first ``most`` trials."""
    shown = ", ".join(ids[:most]) + (f", ... {len(ids) - most} more" if len(ids) > most else "")
    return f"{len(ids)} {flag} ({shown})"


def last_stage(folder: Path, trial_id: str) -> str:
    """The last stage a trial completed, from its ``stages.jsonl`` ('' if none yet)."""
    path = folder / "trials" / trial_id / "stages.jsonl"
    try:
        last = json.loads(path.read_text().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        return ""
    epochs = f" {last['epochs_done']}" if last.get("stage") == "finetuning" else ""
    return f"{last.get('stage', '')}{epochs}"


def pareto_front(table, objectives):
    """The finished, usable trials (:func:`rcsweep.results.split_usable`) that no other trial beats
    on every objective, best first in the first objective (``objectives``: the sweep's
    ``(metric, direction)`` pairs)."""
    return front_and_usable(table, objectives)[0]


def front_and_usable(table, objectives) -> tuple:
    """(front, usable rows) of ``table``: :func:`pareto_front` and the rows it was chosen from."""
    objectives = parse_objectives([f"{m}:{d}" for m, d in objectives])
    usable, _ = split_usable(table, needed=[o.column for o in objectives])
    if usable.empty:
        return usable, usable
    values = usable[[o.column for o in objectives]].to_numpy(dtype=float)
    return usable.iloc[front_order(values, [o.direction for o in objectives])], usable


def front_line(front, usable, objectives) -> str:
    """``'Pareto front: 5 of 23 usable trials, hypervolume 0.7312 (robust_acc max, model_bits min;
    normalisation: ...)'``: the hypervolume of ``front`` normalised as :mod:`rcsweep.pareto` says,
    reference values from ``usable`` (as ``rcsweep pareto`` does), or why there is none."""
    objs = parse_objectives([f"{m}:{d}" for m, d in objectives])
    names = ", ".join(f"{m} {d}" for m, d in objectives)
    try:
        hv = hypervolume(gains(front, objs, reference_values(usable, objs)))
    except UserError as e:
        return f"Pareto front: {len(front)} of {len(usable)} usable trials ({names}); no hypervolume: {e}"
    rules = "; ".join(f"{k}: {v}" for k, v in normalisation_text(objs).items())
    return (f"Pareto front: {len(front)} of {len(usable)} usable trials, hypervolume {hv:.4f} ({names}; "
            f"normalisation: {rules})")


def describe_spec(spec: SweepSpec) -> str:
    """What ``rcsweep validate`` prints: the count, the space, the trials when known, the cost."""
    options = ", ".join(f"{k}: {'null' if v is None else v}" for k, v in spec.search_options.items())
    lines = [f"sweep {spec.name}: {spec.total_trials()} trials, search {spec.search}"
             f"{' {' + options + '}' if options else ''} (search seed {spec.search_seed}), "
             f"objectives {', '.join(f'{m} {d}' for m, d in spec.objectives)}",
             f"  at most {spec.max_concurrent} at once, each with {spec.resources['cpu']:g} CPU, "
             f"{spec.resources['gpu']:g} GPU; retries per trial {spec.max_failures}"]
    lines += [f"  fixed {k} = {v}" for k, v in spec.fixed.items()]
    lines += [f"  space {n}: {d.kind} {list(d.values)}" + (f", step {d.step:g}" if d.step is not None else "")
              + (f", default {d.default}" if d.default is not None else "") for n, d in spec.space.items()]
    known = [spec.trial_config(overrides=r) for r in spec.references]
    lines += [f"  reference {i}: {dict(r)}" for i, r in enumerate(spec.references)]
    if spec.search == "grid":
        grid = spec.grid()
        known += [spec.trial_config(p) for p in grid]
        lines += [f"  grid point {i}: {p}" for i, p in enumerate(grid)]
    exact = spec.search == "grid"
    if not exact:
        distinct = _distinct_searched(spec, known)
        if distinct is not None and len(distinct) <= spec.total_trials() - len(known):
            known += distinct  # a finite space smaller than the trials asked for: each is run once
            exact = True
        else:  # the searched trials are not known yet: random draws from the same space stand in
            import optuna

            from .space import ConditionalSpace

            optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line in validate
            space, study = ConditionalSpace(spec), optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
            known += [spec.trial_config(space(study.ask())) for _ in range(spec.total_trials() - len(known))]
    lines.append(estimated_cost(known, exact=exact))
    lines += [line for line in (early_stopping_line(spec, known[0] if known else None), finite_space_line(spec)) if line]
    weak = eval_budget_line(spec)
    if weak:
        lines.append(weak)
    return "\n".join(lines)


def early_stopping_line(spec: SweepSpec, cfg: TrialConfig | None = None) -> str:
    """The sweep's early stopping as ``rcsweep validate`` says it ('' when off): rungs, eta, margin
    and what each rung screens (:mod:`rcsweep.early_stopping`, :mod:`rcsweep.screening`), the
    ``val`` images counted on ``cfg``'s dataset where it loads."""
    from ..data import load_dataset

    es = spec.early_stopping
    if es is None:
        return ""
    images = f"min({es.screen_size}, val) val images"
    if cfg is not None:
        try:
            val = len(load_dataset(cfg.dataset, "val", train_size=cfg.train_size, val_size=cfg.val_size)[1])
        except UserError:
            val = None
        if val is not None:
            images = f"{es.screen_size} val images" if val >= es.screen_size else \
                f"all {val} val images (fewer than screen_size {es.screen_size}; a larger val_size is taken from train)"
    what = "rungs screened and recorded, no trial stopped (stop: false)" if not es.stop else \
        f"a rung stops trials below its top 1/{es.eta} once it has {es.eta + 1} points, never its first front, " \
        f"dominated by more than {es.margin_se:g} standard errors"
    return (f"  early stopping: rungs {list(es.rungs)} (fine-tuning epochs done; 0: the compressed model), "
            f"eta {es.eta}: {what}; each rung screens {images} with PGD-{es.screen_steps} (seed {es.screen_seed})")


def finite_space_line(spec: SweepSpec) -> str:
    """A note when a finite space holds fewer distinct configurations than the searched trials
    asked for ('' otherwise): the sweep ends early after running them all (issue 15)."""
    from .identity import config_key, finite_config_keys

    if spec.search == "grid":
        return ""
    keys = finite_config_keys(spec)
    if keys is None:
        return ""
    distinct = len(keys - {config_key(spec.trial_config(overrides=r)) for r in spec.references})
    searched = spec.total_trials() - len(spec.references)
    if distinct >= searched:
        return ""
    return (f"  note: the space holds {distinct} distinct configurations, fewer than the {searched} searched trials "
            f"asked for: the sweep ends after running them all ('{distinct} distinct configurations, all run')")


def eval_budget_line(spec: SweepSpec) -> str:
    """A warning line when the sweep's evaluation budget can go below the documented floor
    (:func:`rcsweep.evaluate.eval_budget_warning`: APGD ``eval_steps`` >= 20 and ``eval_restarts``
    >= 2), else ''. Each setting is taken at the lowest value it can have in a trial: fixed (else
    rcsweep's default), searched (the space's lowest choice or bound) or set by a reference."""
    from ..evaluate import EVAL_RESTARTS_FLOOR, EVAL_STEPS_FLOOR, eval_budget_warning

    low, where = {}, {}
    for name in ("eval_steps", "eval_restarts"):
        cands = [(spec.fixed[name], "fixed") if name in spec.fixed else (getattr(TrialConfig, name), "default")]
        if name in spec.space:
            cands.append((min(spec.space[name].values), "searched"))
        cands += [(r[name], f"set by reference {i}") for i, r in enumerate(spec.references) if name in r]
        low[name], where[name] = min(cands, key=lambda c: c[0])
    text = eval_budget_warning(int(low["eval_steps"]), int(low["eval_restarts"]))
    if not text:
        return ""
    whence = ", ".join(f"{n} {where[n]}" for n, floor in (("eval_steps", EVAL_STEPS_FLOOR),
                                                          ("eval_restarts", EVAL_RESTARTS_FLOOR)) if low[n] < floor)
    return f"  WARNING: {text} ({whence}); such trials get the weak_eval flag"


def _distinct_searched(spec: SweepSpec, references: list[TrialConfig]):
    """The distinct configurations of a finite space that are not a reference's (the searcher runs
    each at most once), or None where the space is not finite."""
    from .identity import config_key

    points = spec.finite_points()
    if points is None:
        return None
    seen = {config_key(cfg) for cfg in references}
    out = []
    for cfg in (spec.trial_config(p) for p in points):
        if config_key(cfg) not in seen:
            seen.add(config_key(cfg))
            out.append(cfg)
    return out


def estimated_cost(trials: list[TrialConfig], exact: bool) -> str:
    """Training compute of ``trials`` with shared pretraining (dense MACs bound the fine-tuning)."""
    from ..data import load_dataset
    from ..metrics import count_macs
    from ..models import build_model
    from ..pipeline import stage_flops

    pre, fine, keys = 0.0, 0.0, {}
    try:
        for cfg in trials:
            n_train = len(load_dataset(cfg.dataset, "train", train_size=cfg.train_size, val_size=cfg.val_size)[1])
            macs = count_macs(build_model(cfg.model, cfg.dataset, cfg.width), tuple(_shape(cfg)))
            flops = stage_flops(cfg, macs, macs, n_train)
            keys.setdefault(pretrain_id(cfg), flops["flops_pretrain"])
            fine += flops["flops_finetune"]
    except UserError as e:
        return f"  estimated cost: unknown ({e})"
    pre = sum(keys.values())
    how = "" if exact else " (searched trials estimated by random draws from the space)"
    return (f"  estimated training compute{how}: {(pre + fine) / 1e12:.3g} TFLOP = pretraining {pre / 1e12:.3g} "
            f"({len(keys)} distinct model(s), shared) + fine-tuning at most {fine / 1e12:.3g}")


def _shape(cfg: TrialConfig):
    from ..data import dataset_info

    return dataset_info(cfg.dataset).shape


def _frame(df) -> str:
    text = df.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}")
    return "\n".join("  " + line for line in text.splitlines())
