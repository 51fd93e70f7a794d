"""``rcsweep replay DIR [--early-stopping YAML]``: what early stopping would have done to a sweep
that recorded its screening (issue 16, item 6), without running anything.

A sweep records every rung's screening (``screen_history``) when its file has ``early_stopping``
(``stop: false`` screens without stopping: a full grid can be recorded so). The replay runs the
rung decision (:func:`rcsweep.rungs.decide`) on those records: trials arrive in results.csv order
(the order they started; asynchronous arrival at each rung is approximated by it), each goes
through the replayed rungs it reaches, and every rung decides on the points that arrived before
it, as the scheduler would have; once a trial has finished, a final evaluation that flags it off
the front (``suspect``, ``degenerate``, ...) withdraws its points from later decisions, as the
scheduler does (:meth:`rcsweep.sweep.scheduler.RungScheduler.withdraw`). References are never stopped. A trial that the recorded sweep
stopped itself counts as stopped at its recorded rung unless the replay stops it earlier; a
replayed rung that a trial reached but did not record is an error (record with rungs covering
the replayed ones).

Reported: the trials stopped (rung and reason), the front's trials among them (the goal is none),
the compute saved (fine-tuning after the rung, the final evaluation and the later rungs'
screening; and, for every trial, the screening of recorded rungs that the replayed setting does
not screen; :mod:`rcsweep.compute` defines a sweep's compute) as FLOPs and seconds, and the
hypervolume kept (the front of the trials not stopped against the full front, one normalisation).
"""
from __future__ import annotations

from ..compute import number
from ..errors import UserError
from ..metrics_table import missing

SAVED_PARTS = ("flops", "seconds")
SCREENING_KEYS = ("screen_size", "screen_steps", "screen_seed")  # what the recorded screening fixed


def simulate(table, objectives, es, num_classes, group=None) -> dict:
    """``{trial_id: (rung, reason)}`` of the trials early stopping ``es``
    (:class:`rcsweep.early_stopping.EarlyStopping`) stops in a results ``table`` (module
    docstring); ``objectives``: ``(metric, direction)`` pairs; ``num_classes``: chance is 1/that.
    ``group(row, rung) -> str``: which trials a rung compares (default: :func:`rcsweep.rungs.group_key`,
    what the scheduler uses; another rule only to measure it, as ``benchmarks/replay_grouping.py`` does)."""
    from ..rungs import decide, group_key, rung_point_of, rung_values
    from ..trial_status import excluding_flags

    group = group or (lambda row, rung: group_key(row))

    points: dict = {}
    out: dict = {}
    for _, row in table[table["status"].isin(["finished", "early_stopped"])].iterrows():
        tid = row["trial_id"]
        history = {h["rung"]: h for h in (row.get("screen_history") or [])}
        total = int(row["finetune_epochs"]) if not missing(row.get("finetune_epochs")) and row.get("finetune") != "none" else 0
        recorded_stop = int(row["screen_rung"]) if row["status"] == "early_stopped" else None
        for r in (r for r in es.rungs if r <= total):
            if recorded_stop is not None and r > recorded_stop:
                out[tid] = (recorded_stop, "stopped in the recorded sweep")
                break
            if r not in history:
                raise UserError(f"trial {tid} reached rung {r} but recorded no screening there: replay rungs that "
                                f"the sweep recorded (its early_stopping rungs)")
            recorded = history[r].get("values") or {}  # what the live decision compared, where recorded
            values = recorded if all(m in recorded for m, _ in objectives) else rung_values(objectives, history[r], row)
            point = rung_point_of(tid, values, history[r])
            rung = points.setdefault((group(row, r), r), [])
            rung.append(point)
            if bool(row.get("is_reference")):
                continue
            d = decide(rung, tid, objectives, eta=es.eta, margin_se=es.margin_se, num_classes=num_classes)
            if d.stop:
                out[tid] = (r, d.reason)
                break
        else:
            if recorded_stop is not None:
                out[tid] = (recorded_stop, "stopped in the recorded sweep")
        if tid not in out and excluding_flags(row):  # as the scheduler withdraws them when the trial ends
            for rung_points in points.values():
                rung_points[:] = [p for p in rung_points if p.trial_id != tid]
    return out


def saved(row, rung, rungs=None) -> dict:
    """FLOPs and seconds a recorded ``row`` would not have spent under the replayed rungs ``rungs``
    (None: every rung it recorded), stopped at ``rung`` (None: not stopped): the screening of
    recorded rungs the replay does not screen and, when stopped, its fine-tuning after the rung,
    its final evaluation and the screening of later rungs. A row the recorded sweep stopped
    itself saves only screening."""
    unscreened = [h for h in (row.get("screen_history") or [])
                  if (rung is not None and h["rung"] > rung) or (rungs is not None and h["rung"] not in rungs)]
    out = {"flops": sum(number(h.get("flops")) for h in unscreened),
           "seconds": sum(number(h.get("seconds")) for h in unscreened)}
    if rung is not None and row.get("status") == "finished":
        total = number(row.get("finetune_epochs")) if row.get("finetune") != "none" else 0.0
        left = 1.0 - rung / total if total else 0.0
        out["flops"] += left * number(row.get("flops_finetune")) + number(row.get("flops_evaluate"))
        out["seconds"] += left * number(row.get("time_finetune_s")) + number(row.get("time_evaluate_s"))
    return out


def replay(folder, es=None) -> str:
    """The replay of the sweep in ``folder`` with early stopping ``es`` (a mapping as in a sweep
    file; None: the sweep's own), as text. Raises UserError (one line) when there is nothing to replay."""
    from ..early_stopping import parse_early_stopping
    from ..results import load_results
    from ..sweep.folder import read_spec

    spec = read_spec(folder)
    given = es if es is not None else (spec.early_stopping.to_dict() if spec.early_stopping else None)
    if given is None:
        raise UserError("--early-stopping: the sweep has no early_stopping section; give one, e.g. "
                        "--early-stopping '{rungs: [0, 1], eta: 3}'")
    if not isinstance(given, dict):
        raise UserError(f"--early-stopping: must be a mapping like {{rungs: [0, 1], eta: 3}}, got {given!r}")
    recorded_es = spec.early_stopping.to_dict() if spec.early_stopping else {}
    for key in SCREENING_KEYS:  # the replay decides on the screening the sweep recorded; it measures nothing
        if key in given and recorded_es and given[key] != recorded_es.get(key):
            raise UserError(f"--early-stopping: {key} cannot change in a replay: it replays the recorded "
                            f"screening ({key} {recorded_es.get(key)}); only rungs, eta and margin_se can")
    es = parse_early_stopping({**given, "stop": True}, search="replay", objectives=spec.objectives,
                              fixed=spec.fixed, space=spec.space)
    unrecorded = [r for r in es.rungs if recorded_es and r not in recorded_es.get("rungs", ())]
    if unrecorded:
        raise UserError(f"--early-stopping: rungs: {unrecorded[0]} was not screened by the sweep (it screened rungs "
                        f"{list(recorded_es['rungs'])}); replay rungs among those")
    table = load_results(folder)
    if "screen_history" not in table or not table["screen_history"].map(bool).any():
        raise UserError(f"{folder}: no trial recorded its screening (run the sweep with early_stopping, "
                        f"stop: false to record without stopping)")
    res = replay_table(table, spec.objectives, es)
    stops, front, full, save, lost = res["stops"], res["front"], res["compute"], res["saved"], res["front_stopped"]
    hv_full, hv_kept = res["hv_full"], res["hv_kept"]
    decision = {k: v for k, v in es.to_dict().items() if k in ("rungs", "eta", "margin_se")}
    screened = next((h.get("n") for hist in table["screen_history"] if isinstance(hist, list) for h in hist), None)
    lines = [f"replay of {folder} with early_stopping {decision} on the recorded screening "
             f"({screened} images per rung)",
             f"stopped: {len(stops)} of {len(table)} trials"
             + "".join(f"\n  {tid} at rung {r}: {why}" for tid, (r, why) in stops.items()),
             f"front trials stopped: {len(lost)} of {len(front)}" + (f" ({', '.join(lost)})" if lost else ""),
             f"compute: {full['flops']:.4g} FLOPs, {full['seconds']:.4g} s recorded; saved beyond the recorded stops "
             f"{save['flops']:.4g} FLOPs ({_share(save['flops'], full['flops'])}), {save['seconds']:.4g} s "
             f"({_share(save['seconds'], full['seconds'])})",
             f"hypervolume kept: {hv_kept:.4f} of {hv_full:.4f} ({_share(hv_kept, hv_full)})"]
    recorded_stops = int((table["status"] == "early_stopped").sum())
    if recorded_stops:  # their final values were never measured: the front is of the trials that finished
        lines.append(f"note: {recorded_stops} trial(s) stopped in the recorded sweep never finished, so the front "
                     f"and hypervolume are those of the finished trials; a sweep recorded with "
                     f"early_stopping stop: false replays without this gap")
    return "\n".join(lines)


def replay_table(table, objectives, es) -> dict:
    """Early stopping ``es`` replayed on a results ``table`` (:func:`simulate`, in the table's row
    order): ``stops`` ({trial_id: (rung, reason)}), ``front`` (the table's Pareto front),
    ``front_stopped`` (its trial ids that ``es`` stops), ``compute`` (:func:`rcsweep.compute.sweep_compute`
    of the whole table), ``saved`` (FLOPs and seconds the stopped finished trials would not have
    spent, :func:`saved`), ``hv_full`` and ``hv_kept`` (hypervolume of the front without and with the
    stops, one reference point)."""
    from ..compute import sweep_compute
    from ..data import dataset_info

    num_classes = dataset_info(str(table["dataset"].iloc[0])).num_classes
    stops = simulate(table, objectives, es, num_classes)
    front, hv_full, hv_kept = hypervolume_kept(table, objectives, stops)
    save = {k: 0.0 for k in SAVED_PARTS}
    for _, row in table.iterrows():
        stop = stops.get(row["trial_id"])
        for k, v in saved(row, None if stop is None else stop[0], es.rungs).items():
            save[k] += v
    return {"stops": stops, "front": front, "front_stopped": sorted(set(front["trial_id"]) & set(stops)),
            "compute": sweep_compute(table), "saved": save, "hv_full": hv_full, "hv_kept": hv_kept}


def hypervolume_kept(table, objectives, stopped) -> tuple:
    """``(front, hv_full, hv_kept)``: the Pareto front of a results ``table``'s usable trials, its
    hypervolume, and the hypervolume of the front left when the trial ids ``stopped`` are removed,
    with one reference point (the table's usable trials') for both; 0.0 for an empty front."""
    from ..pareto import gains, hypervolume, parse_objectives, reference_values
    from ..sweep.summary import front_and_usable

    front, usable = front_and_usable(table, objectives)
    kept_rows = usable[~usable["trial_id"].isin(list(stopped))]
    kept_front, _ = front_and_usable(kept_rows, objectives) if len(kept_rows) else (kept_rows, kept_rows)
    objs = parse_objectives([f"{m}:{d}" for m, d in objectives])
    refs = reference_values(usable, objs)
    return (front, hypervolume(gains(front, objs, refs)) if len(front) else 0.0,
            hypervolume(gains(kept_front, objs, refs)) if len(kept_front) else 0.0)


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "n/a"


