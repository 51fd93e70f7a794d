"""The live progress table of a sweep, and the driver's side of ``results.csv``.

:class:`SweepProgress` is a Tune callback. It prints one line when a trial starts, finishes or
fails, and, every ``interval_s`` seconds on a terminal, a table of the running trials and their
stages with the best result so far. When Tune gives up on a trial (its retries spent, or its
worker died so that it could not say so itself) it marks the trial's row ``failed`` with the
reason.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ray.tune import Callback

from ..results import read_rows, record_to_row, upsert_rows
from .folder import read_spec
from .scheduler import stopped


def describe(params: dict) -> str:
    """A short label of a trial's methods: ``adv prune_structured s=0.5 -> ft adversarial``."""
    parts = [params.get("pretrain", "standard")[:3], params.get("compression", "none")]
    for key, short in (("sparsity", "s"), ("weight_bits", "w"), ("act_bits", "a")):
        if params.get(key) is not None:
            parts.append(f"{short}={params[key]:.3g}")
    if params.get("finetune", "none") != "none":
        parts.append(f"-> ft {params['finetune']}")
    return " ".join(parts)


class SweepProgress(Callback):
    """Args: ``folder`` (the sweep folder), ``objectives`` (``[(metric, max|min), ...]``),
    ``total`` (trials planned), ``interval_s`` (seconds between tables on a terminal, default 15)."""

    def __init__(self, folder, objectives, total: int, interval_s: float = 15.0):
        self.folder = str(folder)
        self.objectives = list(objectives)
        self.total = total
        self.interval_s = interval_s
        self._start = time.monotonic()
        self._last_table = 0.0
        self._stage: dict = {}
        self._best = None
        self._before: set = set()  # trials finished or stopped before a resume

    def setup(self, **info):
        # also runs after Tuner.restore, which brings back the callback pickled at the start
        self._start = self._last_table = time.monotonic()
        self._before = set()
        self.total = read_spec(self.folder).total_trials()

    def _say(self, text: str) -> None:
        print(f"[{time.monotonic() - self._start:6.0f}s] {text}", file=sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        folder = Path(self.folder) / "trials" / trial.trial_id
        if (folder / "record.json").is_file() or stopped(folder) is not None:
            self._before.add(trial.trial_id)  # done before a resume: Tune runs it only to hear so
            return
        self._say(f"start   {trial.trial_id}  {describe(trial.config.get('trial', {}))}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        stage = result.get("stage", "")
        if "epoch" in result and stage in ("pretrain", "finetuning"):
            stage = f"{stage} epoch {result['epoch']}"
        self._stage[trial.trial_id] = stage

    def on_trial_complete(self, iteration, trials, trial, **info):
        r = trial.last_result or {}
        before = " (before the resume)" if trial.trial_id in self._before else ""
        stop = stopped(Path(self.folder) / "trials" / trial.trial_id)
        if stop is not None:  # the early-stopping scheduler ended it at a rung
            self._say(f"stopped {trial.trial_id}  at rung {stop['rung']}{before}: {stop['reason']}")
            return
        shown = "  ".join(f"{m}={r[m]:.4g}" for m, _ in self.objectives if isinstance(r.get(m), (int, float)))
        self._say(f"done    {trial.trial_id}  {shown}{before}")
        metric, direction = self.objectives[0]
        value = r.get(metric)
        if isinstance(value, (int, float)) and (self._best is None or (value > self._best[0]) == (direction == "max")):
            self._best = (value, trial.trial_id)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say(f"retry   {trial.trial_id}  after: {_error_line(trial)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        rows = {r["trial_id"]: r for r in read_rows(self.folder)}
        recorded = rows.get(trial.trial_id, {})
        # Tune may not hold the error text yet (seen after a retried trial failed again): the
        # trial's own record says what happened
        reason = _error_line(trial, recorded.get("error") if recorded.get("status") == "failed" else None)
        self._say(f"FAILED  {trial.trial_id}  {reason}")
        if recorded.get("status") != "failed":  # the trial could not record it itself
            params = trial.config.get("trial", {})
            upsert_rows(self.folder, [record_to_row(trial.trial_id, "failed", params=params, error=reason,
                                                    is_reference=bool(trial.config.get("reference")))])

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if not sys.stdout.isatty() or now - self._last_table < self.interval_s:
            return
        self._last_table = now
        print(self.table(trials), flush=True)

    def table(self, trials) -> str:
        counts: dict = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        done = counts.get("TERMINATED", 0)
        head = (f"-- {done}/{self.total} finished, {counts.get('RUNNING', 0)} running, "
                f"{counts.get('ERROR', 0)} failed, {counts.get('PENDING', 0)} pending")
        if self._best is not None:
            head += f"; best {self.objectives[0][0]} {self._best[0]:.4g} ({self._best[1]})"
        lines = [head] + [f"   {t.trial_id}  {describe(t.config.get('trial', {})):<40} {self._stage.get(t.trial_id, '')}"
                          for t in trials if t.status == "RUNNING"]
        return "\n".join(lines)


def _error_line(trial, recorded=None) -> str:
    """The last line of ``trial``'s error as Tune holds it, else ``recorded`` (the error the trial
    wrote to results.csv), else a pointer to the error file."""
    text = trial.get_error() or ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if lines:
        return lines[-1][:300]
    return str(recorded)[:300] if recorded else "unknown error (see the trial's error file)"
