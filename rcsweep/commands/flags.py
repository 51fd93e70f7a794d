"""``rcsweep flags DIR``: apply the installed rules of the table of statuses and flags
(:mod:`rcsweep.trial_status`) to a finished sweep again, without evaluating anything.

For each trial, as the rules of rcsweep change (a new flag, a stricter degeneracy test):

- with a ``trials/<id>/record.json``: the record's flags are derived again from its own
  evaluation, verification and metrics (:func:`rcsweep.trial_status.derive_flags`); the record and
  its ``results.csv`` row are rewritten;
- without one (committed results whose models and records were not kept): the flags that
  ``results.csv`` alone supports are set on the row: ``weak_eval`` from ``eval_steps`` and
  ``eval_restarts`` (:func:`rcsweep.evaluate.eval_budget_warning`), ``degenerate`` from ``clean_acc``, the
  test-set size (:func:`analysis.common.n_test`) and, when the dataset is at hand, the
  majority-class rate of the test images the trial was evaluated on (a constant classifier scores
  exactly that), ``collapsed`` from the error of a failed trial,
  and ``verify.csv``'s verdicts (``verified_robust_acc``, ``suspect``) when the folder has one.

Returns what changed; nothing else in the folder is touched.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common import load_sweep, n_test, trial_dir

from ..config import applicable
from ..data import dataset_info, load_dataset
from ..errors import UserError
from ..evaluate import eval_budget_warning
from ..fileio import atomic_write_json
from ..metrics_table import missing
from ..results import add_flag, read_rows, record_to_row, upsert_rows
from ..trial_status import degeneracy, derive_flags, join_flags, keep_row_only, parse_flags
from .verify import VERIFY_FILE, apply_verification


def refresh_flags(folder, data_dir=None) -> dict:
    """Re-derive every trial's flags in ``folder`` (module docstring). Returns ``{"flags": {flag:
    number of trials carrying it}, "changed": [trial ids whose flags changed], "from_records": n,
    "from_results": n}`` after the refresh."""
    folder = Path(folder)
    df = load_sweep(folder)  # raises UserError for a folder that is not a sweep
    before = {str(t): join_flags(parse_flags(f)) for t, f in zip(df["trial_id"], df["flags"])}
    n_records = 0
    sizes = n_test(folder, df)
    raw = {r["trial_id"]: r for r in read_rows(folder)}
    rows = []
    for i, r in df.iterrows():
        tid = str(r["trial_id"])
        row = dict(raw[tid])
        classes = dataset_info(r["dataset"]).num_classes
        rec_path = trial_dir(folder, tid) / "record.json"
        if r["status"] == "finished" and rec_path.is_file():
            record = json.loads(rec_path.read_text())
            ev = record.setdefault("evaluation", {})
            if "weak_eval" not in ev:  # evaluated before the floor existed: judged by its settings
                ev["weak_eval"] = _weak(record.get("params", {}))
            record = derive_flags(record, classes)
            atomic_write_json(rec_path, record)
            n_records += 1
            new = record_to_row(tid, "finished", record, is_reference=bool(r.get("is_reference")))
            keep_row_only(new, row)
            rows.append(new)
            continue
        if r["status"] == "finished" and not missing(r.get("clean_acc")) and not missing(sizes[i]):
            why = degeneracy(float(r["clean_acc"]), int(sizes[i]), classes, _majority_rate(r, data_dir))
            row["degenerate"], row["degenerate_reason"] = bool(why), why
            flags = [f for f in parse_flags(row.get("flags")) if f != "degenerate"] + (["degenerate"] if why else [])
            if str(row.get("suspect")).lower() == "true":
                flags.append("suspect")
            if _weak(r):
                flags.append("weak_eval")
            row["flags"] = join_flags(flags)
        if r["status"] == "failed" and str(r.get("error") or "").startswith("TrainingCollapsed"):
            add_flag(row, "collapsed")
        if applicable("quant_scheme", {"compression": row.get("compression")}) and not row.get("quant_scheme"):
            row["quant_scheme"] = "mse_channel"  # written before the parameter existed: the only quantizer then
        rows.append(row)
    if rows:
        upsert_rows(folder, rows)
    if (folder / VERIFY_FILE).is_file():
        apply_verification(folder, pd.read_csv(folder / VERIFY_FILE, dtype={"trial_id": str}))
    out = load_sweep(folder)
    counts: dict = {}
    for cell in out["flags"]:
        for f in parse_flags(cell):
            counts[f] = counts.get(f, 0) + 1
    changed = [str(t) for t, f in zip(out["trial_id"], out["flags"])
               if before.get(str(t)) != join_flags(parse_flags(f))]
    return {"flags": counts, "changed": changed, "from_records": n_records, "from_results": len(out) - n_records}


def _weak(params) -> str:
    """The evaluation-floor warning of a trial's settings ('' at or above the floor)."""
    steps, restarts = params.get("eval_steps"), params.get("eval_restarts")
    if missing(steps) or missing(restarts):
        return ""
    return eval_budget_warning(int(steps), int(restarts))


_MAJORITY: dict = {}


def _majority_rate(row, data_dir) -> float | None:
    """Share of the most frequent class among the trial's test images (None: dataset not at hand)."""
    key = (row["dataset"], None if missing(row.get("test_size")) else int(row["test_size"]))
    if key not in _MAJORITY:
        try:
            _, y = load_dataset(key[0], "test", data_dir=data_dir, test_size=key[1])
            _MAJORITY[key] = float(np.bincount(y.numpy()).max() / len(y))
        except UserError:
            _MAJORITY[key] = None
    return _MAJORITY[key]


