"""Multi-objective early stopping as a Ray Tune trial scheduler (issue 16).

Ray Tune's ASHA and HyperBand rank trials by one metric; :class:`RungScheduler` is Tune's FIFO
scheduler (trials run in the order the searcher gives them) plus the rung decision of
:mod:`rcsweep.rungs` (non-dominated sorting with a statistical margin, after Li et al. 2020's ASHA
and Schmucker et al. 2021's MO-ASHA). Being a scheduler, it works with any searcher and on a
cluster: decisions are taken in the driver, on what the trials report at their rungs
(:mod:`.rung_report`).

- **Rungs** fill per group of comparable trials (:func:`rcsweep.rungs.group_key`: compression
  method and total epochs). References add their points but are never stopped: they are the
  user's baselines.
- **A stopped trial** gets ``trials/<id>/early_stopped.json`` (the trainable then never runs it
  again, also after a resume) and its results.csv row, status ``early_stopped``, with the rung it
  reached (``screen_rung``), its screening metrics, why (``early_stopped_reason``) and what it cost
  until then (:func:`record_stop`). The searcher tells the study it was pruned
  (:mod:`.search`).
- **State** is the file ``DIR/early_stopping.json`` (every rung's points with their decisions),
  written atomically before a decision takes effect. Tune pickles the scheduler with the Tuner
  but saves no scheduler state between its experiment checkpoints; a resumed sweep, even after a
  SIGKILLed driver, reads the file back. A point reported again (a trial resumed from its rung's
  checkpoint) gets the decision recorded for it.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..fileio import atomic_write_json
from ..results import record_to_row, upsert_rows
from ..rungs import Decision, RungPoint, decide
from ..screening import screening_metrics
from ..sweepfile import SweepSpec
from ..trial_status import excluding_flags
from . import checkpoints
from .folder import ES_STATE_FILE
from .rung_report import RUNGS_FILE, rung_point

STATE_FILE = ES_STATE_FILE  # DIR/: every rung's points and decisions
STOPPED_FILE = "early_stopped.json"  # trials/<id>/: stopped at a rung; never run again


class RungScheduler(FIFOScheduler):
    """FIFO plus the rung decision (module docstring) for the sweep ``spec`` (its ``early_stopping``
    and ``objectives``)."""

    def __init__(self, spec: SweepSpec):
        super().__init__()
        self.objectives = tuple(spec.objectives)
        self.es = spec.early_stopping
        self._state = None  # group|rung -> [points with decisions], read from STATE_FILE on first use

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("rung") is None:
            return TrialScheduler.CONTINUE
        folder = Path(trial.config["_sweep"]["dir"])
        decision = self.judge(folder, trial.trial_id, result, reference=bool(trial.config.get("reference")),
                              known={t.trial_id for t in tune_controller.get_trials()})
        if decision.stop:
            record_stop(folder, trial.trial_id, trial.config["trial"], bool(trial.config.get("reference")),
                        int(result["rung"]), decision.reason)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        flags = excluding_flags({"flags": (result or {}).get("flags")})
        if flags:  # its final evaluation keeps it off the front: its points no longer stop others
            self.withdraw(Path(trial.config["_sweep"]["dir"]), trial.trial_id,
                          f"flagged {', '.join(flags)} by its final evaluation")

    def judge(self, folder: Path, trial_id: str, result: dict, reference: bool = False, known=None) -> Decision:
        """The decision for ``trial_id``'s rung report ``result``: recorded and returned (the one
        recorded before, for a point reported again). The rung's withdrawn points
        (:meth:`withdraw`) take no part. ``known``: the trial ids Tune holds (:meth:`state`)."""
        state = self.state(folder, known)
        points = state.setdefault(f"{result['rung_group']}|{int(result['rung'])}", [])
        for p in points:
            if p["trial_id"] == trial_id:
                return Decision(**p["decision"])
        point = rung_point(result, trial_id)
        if reference:
            decision = Decision(False, "a reference: never stopped")
        else:
            decision = decide([_point(p) for p in points if not p.get("withdrawn")] + [point], trial_id,
                              self.objectives, eta=self.es.eta, margin_se=self.es.margin_se,
                              num_classes=int(result["rung_classes"]))
        points.append({**asdict(point), "decision": asdict(decision)})
        atomic_write_json(folder / STATE_FILE, state)
        return decision

    def withdraw(self, folder: Path, trial_id: str, why: str) -> None:
        """Take ``trial_id``'s points out of every later decision, saying ``why`` (kept in the state):
        a trial whose final evaluation flags it off the front (``suspect``: white-box attacks, the
        screening's PGD among them, overstate its robustness; ``degenerate``; ...) must not stop
        others with its screening."""
        state = self.state(folder)
        hit = [p for points in state.values() for p in points if p["trial_id"] == trial_id and not p.get("withdrawn")]
        for p in hit:
            p["withdrawn"] = why
        if hit:
            atomic_write_json(folder / STATE_FILE, state)

    def state(self, folder: Path, known=None) -> dict:
        """The rungs' points (read from ``folder/early_stopping.json`` on first use). ``known``: the
        trial ids Tune holds; on first use, the points of any other trial are dropped: a trial
        started after Tune's last state save by a driver killed since is not part of the sweep (the
        resume sets it aside, ``rcsweep.sweep.runner._reconcile``)."""
        if self._state is None:
            path = folder / STATE_FILE
            self._state = json.loads(path.read_text()) if path.is_file() else {}
            if known is not None and drop_unknown(self._state, known):
                atomic_write_json(path, self._state)
        return self._state

    def __getstate__(self):  # pickled with the Tuner: the state lives in its file
        state = dict(self.__dict__)
        state["_state"] = None
        return state


def drop_unknown(state: dict, known) -> list[str]:
    """Remove from a scheduler ``state`` the points of trials not in ``known``; their ids."""
    gone = sorted({p["trial_id"] for points in state.values() for p in points} - set(known))
    for key in list(state):
        state[key] = [p for p in state[key] if p["trial_id"] in known]
    return gone


def _point(p: dict) -> RungPoint:
    return RungPoint(p["trial_id"], p["values"], p["n"], p["clean_acc"])


def stopped(folder: Path) -> dict | None:
    """``trials/<id>/early_stopped.json`` of a trial folder (rung and reason), or None."""
    try:
        return json.loads((Path(folder) / STOPPED_FILE).read_text())
    except (OSError, ValueError):
        return None


def record_stop(root: Path, trial_id: str, params: dict, is_reference: bool, rung: int, reason: str) -> None:
    """Mark ``trial_id`` stopped at ``rung``: its ``early_stopped.json``, then its results.csv row
    (status ``early_stopped``; the compressed model's sizes, screening metrics and the cost so far
    from its ``rungs.json``)."""
    folder = root / "trials" / trial_id
    atomic_write_json(folder / STOPPED_FILE, {"rung": rung, "reason": reason})
    try:
        seen = json.loads((folder / RUNGS_FILE).read_text())
    except (OSError, ValueError):
        seen = {}
    # the compressed model's sizes (fine-tuning keeps them), what it spent, its screening
    metrics = {**seen.get("sizes", {}), **seen.get("spent", {}), **screening_metrics(seen.get("history", [])),
               "early_stopped_reason": reason}
    upsert_rows(root, [record_to_row(trial_id, "early_stopped", record={"params": params, "metrics": metrics},
                                     is_reference=is_reference)])
    checkpoints.clear(folder)  # never resumed: its stage checkpoints are of no use
