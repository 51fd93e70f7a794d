"""Per-trial records and the sweep's ``results.csv``.

``results.csv`` has one row per trial that has started: ``trial_id``, ``status`` (the table of
statuses and flags: :mod:`rcsweep.trial_status`), ``error``, ``is_reference``, every trial parameter
(empty where it does not apply) and every metric column of :mod:`rcsweep.metrics_table` (flags,
accuracies, efficiency, per-stage times and FLOPs). List- and dict-valued cells (``eps_curve``,
``robust_acc_curve``) are JSON. The file is rewritten atomically under a lock, so trials finishing at
the same moment never corrupt it. :func:`load_results` returns a DataFrame with those cells decoded
and every metric checked against its range: a finished row with a non-finite or out-of-range value
(a damaged or hand-edited file) gets the ``invalid`` flag, is kept off fronts and out of tables, and
one line per such cell names the trial and column (``load_results(..., problems=list)`` collects
them; otherwise they go to stderr).
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import math
from contextlib import contextmanager
from pathlib import Path

from . import metrics_table
from .config import FIELD_NAMES
from .errors import UserError
from .fileio import atomic_write_text
from .trial_status import STATUSES, exclusion, join_flags, parse_flags

META_COLUMNS = ("trial_id", "status", "error", "is_reference")
METRIC_COLUMNS = metrics_table.COLUMNS
COLUMNS = META_COLUMNS + FIELD_NAMES + METRIC_COLUMNS
JSON_COLUMNS = ("eps_curve",) + tuple(m.name for m in metrics_table.METRICS if m.kind == "json" and m.column)
STR_COLUMNS = ("error",) + tuple(m.name for m in metrics_table.METRICS if m.kind == "str" and m.column)
BOOL_COLUMNS = ("is_reference",) + tuple(m.name for m in metrics_table.METRICS if m.kind == "bool" and m.column)
RESULTS_FILE = "results.csv"


def record_to_row(trial_id: str, status: str, record: dict | None = None, params: dict | None = None,
                  error: str = "", is_reference: bool = False) -> dict:
    """A results.csv row from a trial record (or only its parameters while it runs or after it failed)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    row = {"trial_id": trial_id, "status": status, "error": error.replace("\n", " ")[:500],
           "is_reference": bool(is_reference)}
    row.update((record or {}).get("params") or params or {})
    for k, v in metrics_table.upgrade((record or {}).get("metrics") or {}).items():
        if k in METRIC_COLUMNS:
            row[k] = v
    if status == "failed" and error.startswith("TrainingCollapsed"):  # deterministic: not retried
        add_flag(row, "collapsed")
    return row


def add_flag(row: dict, flag: str, reason: str = "") -> dict:
    """``row`` with ``flag`` added to its ``flags`` cell (and ``<flag>`` / ``<flag>_reason`` set where
    the table has those columns)."""
    row["flags"] = join_flags(parse_flags(row.get("flags")) + [flag])
    if flag in METRIC_COLUMNS:
        row[flag] = True
    if reason and f"{flag}_reason" in METRIC_COLUMNS:
        old = row.get(f"{flag}_reason")
        old = old if isinstance(old, str) else ""
        row[f"{flag}_reason"] = reason if not old or reason in old else f"{old}; {reason}"
    return row


def _cell(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return v


@contextmanager
def locked(folder: Path):
    """An exclusive advisory lock on ``folder/.results.lock`` (writers on one host or a shared FS)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".results.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_rows(folder) -> list[dict]:
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def upsert_rows(folder, rows: list[dict]) -> None:
    """Insert or replace rows by ``trial_id``, keeping order of first appearance; atomic."""
    folder = Path(folder)
    with locked(folder):
        existing = {r["trial_id"]: r for r in read_rows(folder)}
        for row in rows:
            existing[row["trial_id"]] = {k: _cell(row.get(k)) for k in COLUMNS}
        extra = sorted({k for r in existing.values() for k in r} - set(COLUMNS))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(COLUMNS) + extra, extrasaction="ignore")
        w.writeheader()
        for r in existing.values():
            w.writerow({k: r.get(k, "") for k in list(COLUMNS) + extra})
        atomic_write_text(folder / RESULTS_FILE, buf.getvalue())


def load_results(folder, problems: list | None = None):
    """``DIR/results.csv`` as a pandas DataFrame: numbers as numbers, booleans as booleans, JSON
    cells decoded, empty cells as NaN/None, every metric checked (module docstring).

    ``problems``: a list that receives one line per invalid cell (``trial 1a2b: robust_acc=inf is
    not finite``); when None the lines go to stderr. Raises UserError (one line) when ``folder`` is
    not a sweep folder or its results.csv is not a results table."""
    import pandas as pd

    path = Path(folder) / RESULTS_FILE
    if not Path(folder).is_dir():
        raise UserError(f"{folder} is not a folder")
    if not path.is_file():
        raise UserError(f"{folder} is not a rcsweep sweep folder (no {RESULTS_FILE})")
    try:
        df = pd.read_csv(path, dtype={c: str for c in STR_COLUMNS + ("trial_id",)})
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty") from None
    if "trial_id" not in df.columns or "status" not in df.columns:
        raise UserError(f"{path} is not a rcsweep results table (no trial_id/status columns)")
    for col in BOOL_COLUMNS:
        if col in df.columns:
            df[col] = df[col].map(lambda v: str(v).strip().lower() == "true" if isinstance(v, (str, bool)) else False)
    for col in JSON_COLUMNS:
        if col in df.columns:
            df[col] = df[col].map(_json_cell)
    for col in STR_COLUMNS:
        if col in df.columns:
            df[col] = df[col].fillna("")
    if "flags" not in df.columns:
        df["flags"] = ""
    _check_values(df, problems)
    _derive(df)
    return df


def split_usable(df, needed=(), use: str = "front"):
    """(usable, excluded) rows of a results table (:func:`load_results`) by the table of statuses
    and flags (:mod:`rcsweep.trial_status`): usable rows are finished, carry no flag that keeps them
    off the front (``use="front"``) or out of cell means (``use="cell"``: suspect, degenerate,
    collapsed, infeasible, invalid), have every ``needed`` column and are not a repeat: of usable
    rows with the same trial configuration (equal in every :data:`rcsweep.config.FIELD_NAMES`
    column, an empty cell equal to an empty cell; so seeds are never merged) the first in row order
    counts and the others do not. ``excluded`` holds the others with a ``reason`` column
    (``<status or flag>: why``, ``missing <columns>`` or ``repeat: same configuration as <trial_id>``)."""
    import pandas as pd

    reasons = []
    for _, r in df.iterrows():
        why = exclusion(r, use)
        if not why:
            missing = [c for c in needed if metrics_table.missing(r.get(c))]
            why = f"missing {', '.join(missing)}" if missing else ""
        reasons.append(why)
    reasons = pd.Series(reasons, index=df.index, dtype=object)
    _mark_repeats(df, reasons)
    excluded = df[reasons != ""].copy()
    excluded.insert(1, "reason", reasons[reasons != ""])
    return df[reasons == ""].copy(), excluded


def _mark_repeats(df, reasons) -> None:
    """Set the reason of every usable row (empty reason) whose configuration an earlier usable row has."""
    cols = [c for c in FIELD_NAMES if c in df.columns]
    first: dict = {}
    for i in df.index[reasons == ""]:
        key = tuple(_config_key(df.at[i, c]) for c in cols)
        if key in first:
            reasons[i] = f"repeat: same configuration as {first[key]}"
        else:
            first[key] = df.at[i, "trial_id"]


def _config_key(v):
    """A hashable, comparable form of a parameter cell: empty cells are None, lists and dicts JSON."""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    return None if metrics_table.missing(v) or v == "" else v


def _derive(df) -> None:
    """Fill the derived metrics (:data:`rcsweep.metrics_table.DERIVED`) that rows written before
    them lack, where every part is there."""
    for name, parts in metrics_table.DERIVED.items():
        if all(p in df.columns for p in parts):
            total = sum(df[p] for p in parts)
            df[name] = df[name].fillna(total) if name in df.columns else total




def _json_cell(v):
    if not isinstance(v, str) or not v:
        return None
    try:
        return json.loads(v)
    except ValueError:
        return None


def _check_values(df, problems: list | None) -> None:
    """Flag ``invalid`` every row with a non-finite or out-of-range metric (see the module docstring)."""
    import pandas as pd

    lines = []
    for col in df.columns:
        m = metrics_table.BY_NAME.get(col)
        if m is None or m.kind in ("str", "json", "bool"):
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        for i in df.index:
            raw = df.at[i, col]
            reason = m.check(values[i]) if not (isinstance(raw, str) and raw.strip() and pd.isna(values[i])) \
                else f"{col}={raw!r} is not a number"
            if reason:
                lines.append(f"trial {df.at[i, 'trial_id']}: {reason}")
                df.at[i, "flags"] = join_flags(parse_flags(df.at[i, "flags"]) + ["invalid"])
                reason_col = "invalid_reason"
                if reason_col not in df.columns:
                    df[reason_col] = ""
                old = df.at[i, reason_col]
                df.at[i, reason_col] = f"{old}; {reason}" if isinstance(old, str) and old else reason
        df[col] = values.where(values.abs() != float("inf"))  # inf -> NaN: never a usable number
    if lines:
        if problems is not None:
            problems.extend(lines)
        else:
            import sys

            for line in lines:
                print(f"rcsweep: {line}; the trial is excluded", file=sys.stderr)
