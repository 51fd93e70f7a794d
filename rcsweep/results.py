"""Per-trial records and the sweep's ``results.csv``.

``results.csv`` has one row per trial that has started: ``trial_id``, ``status`` (``running`` |
``finished`` | ``failed``), ``error``, ``is_reference``, every trial parameter (empty where it does
not apply), every metric and the per-stage times and FLOPs. List- and dict-valued cells
(``eps_curve``, ``robust_acc_curve``) are JSON. The file is rewritten atomically under a lock, so
trials finishing at the same moment never corrupt it. :func:`load_results` returns a DataFrame
with those cells decoded.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import math
from contextlib import contextmanager
from pathlib import Path

from .config import FIELD_NAMES
from .errors import UserError
from .fileio import atomic_write_text

STATUSES = ("running", "finished", "failed")
META_COLUMNS = ("trial_id", "status", "error", "is_reference")
METRIC_COLUMNS = ("clean_acc", "robust_acc", "robust_acc_curve", "suspect", "suspect_reason", "params",
                  "params_nonzero", "sparsity_measured", "model_bits", "dense_model_bits", "macs", "bops",
                  "latency_ms_b1", "latency_ms_b128", "int8_clean_acc", "int8_transfer_robust_acc",
                  "time_pretrain_s", "time_compress_s", "time_finetune_s", "time_evaluate_s",
                  "flops_pretrain", "flops_finetune")
COLUMNS = META_COLUMNS + FIELD_NAMES + METRIC_COLUMNS
JSON_COLUMNS = ("eps_curve", "robust_acc_curve")
RESULTS_FILE = "results.csv"


def record_to_row(trial_id: str, status: str, record: dict | None = None, params: dict | None = None,
                  error: str = "", is_reference: bool = False) -> dict:
    """A results.csv row from a trial record (or only its parameters while it runs or after it failed)."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    row = {"trial_id": trial_id, "status": status, "error": error.replace("\n", " ")[:500],
           "is_reference": bool(is_reference)}
    row.update((record or {}).get("params") or params or {})
    for k, v in ((record or {}).get("metrics") or {}).items():
        if k in METRIC_COLUMNS:
            row[k] = v
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


def load_results(folder):
    """``DIR/results.csv`` as a pandas DataFrame: numbers as numbers, booleans as booleans, JSON
    cells decoded, empty cells as NaN/None."""
    import pandas as pd

    path = Path(folder) / RESULTS_FILE
    if not Path(folder).is_dir():
        raise UserError(f"{folder} is not a folder")
    if not path.is_file():
        raise UserError(f"{folder} is not a rcsweep sweep folder (no {RESULTS_FILE})")
    try:
        df = pd.read_csv(path, dtype={"trial_id": str, "error": str, "suspect_reason": str})
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty") from None
    if "trial_id" not in df.columns or "status" not in df.columns:
        raise UserError(f"{path} is not a rcsweep results table (no trial_id/status columns)")
    for col in ("suspect", "is_reference"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: str(v).strip().lower() == "true" if isinstance(v, (str, bool)) else False)
    for col in JSON_COLUMNS:
        if col in df.columns:
            df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) and v else None)
    for col in ("error", "suspect_reason"):
        if col in df.columns:
            df[col] = df[col].fillna("")
    return df
