"""What every analysis needs from a sweep folder: its rows split into usable and excluded
(:func:`rcsweep.results.split_usable`, re-exported here), the reference models, readable labels for
a trial's methods, the trials' folders and test-set sizes, and tables written as CSV (:func:`to_csv`).

A sweep folder holds ``results.csv`` (read with :func:`rcsweep.results.load_results`) and, per
trial, ``trials/<trial_id>/{record.json,model.pt,model.json}``. Nothing here needs ``sweep.yaml``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from rcsweep.config import applicable
from rcsweep.errors import UserError
from rcsweep.fileio import atomic_write_text
from rcsweep.metrics_table import missing
from rcsweep.results import JSON_COLUMNS, load_results, split_usable  # noqa: F401  (split_usable: re-exported)

TRIALS_DIR = "trials"
# test-split sizes of the built-in datasets, so a CI needs no data on the analysing machine
TEST_SPLIT_SIZES = {"digits": 360, "fashion_mnist": 10000, "cifar10": 10000}


def load_sweep(folder) -> pd.DataFrame:
    """``results.csv`` of a sweep folder; a UserError (one line) if ``folder`` is not a sweep."""
    return load_results(Path(folder))


def exclusion_counts(excluded: pd.DataFrame) -> dict:
    """Excluded rows per status or flag, e.g. ``{'degenerate': 3, 'suspect': 2}``: a row counts once
    for its status when that excludes it, else once for each flag it carries that excludes it (a
    trial can be both suspect and degenerate)."""
    from rcsweep.trial_status import FLAGS, excluding_flags

    counts: dict = {}
    for _, r in excluded.iterrows():
        first = str(r["reason"]).split(":")[0].strip()
        keys = excluding_flags(r) if first in FLAGS else [first]
        for k in keys or [first]:
            counts[k] = counts.get(k, 0) + 1
    return counts




def is_reference(df: pd.DataFrame) -> pd.Series:
    """Reference models: rows flagged ``is_reference`` and the dense models without fine-tuning
    (dense standard, dense adversarial)."""
    flagged = df["is_reference"].astype(bool) if "is_reference" in df else False
    dense = (df.get("compression") == "none") & (df.get("finetune") == "none")
    return flagged | dense


def reference_name(row) -> str:
    """'dense standard', 'dense adversarial' or the row's route for a flagged reference."""
    if row.get("compression") == "none" and row.get("finetune") == "none":
        return f"dense {row.get('pretrain')}"
    return f"reference {row['trial_id']}"


def compression_level(row) -> str:
    """A short label for the compression of a row: 'none', 'prune 50%', 'quant w8a8 ptq', ..."""
    method = row.get("compression")
    if not isinstance(method, str):
        return "?"
    parts = [method]
    if applicable("sparsity", {"compression": method}) and not missing(row.get("sparsity")):
        parts.append(f"{float(row['sparsity']):.0%}")
    if applicable("weight_bits", {"compression": method}):
        w, a = row.get("weight_bits"), row.get("act_bits")
        if not missing(w) and not missing(a):
            parts.append(f"w{int(w)}a{int(a)}")
        if isinstance(row.get("quant_mode"), str):
            parts.append(row["quant_mode"])
        if row.get("quant_scheme") == "minmax_tensor":  # the study's quantizer; the default is not named
            parts.append("minmax")
    return " ".join(parts)


def route(row) -> str:
    """The training route of a row: '<pretrain> pretrain, <finetune> FT' ('no FT' without fine-tuning)."""
    finetune = row.get("finetune")
    return f"{row.get('pretrain')} pretrain, {'no' if finetune == 'none' else finetune} FT"


def trial_dir(folder, trial_id: str) -> Path:
    return Path(folder) / TRIALS_DIR / str(trial_id)


def n_test(folder, df: pd.DataFrame) -> pd.Series:
    """Test-set size of each row: ``evaluation.n_test`` of its record.json, else ``test_size``
    capped at the dataset's test split, else the split's size (NaN if unknown)."""
    out = []
    for _, r in df.iterrows():
        rec = trial_dir(folder, r["trial_id"]) / "record.json"
        n = None
        if rec.is_file():
            try:
                n = json.loads(rec.read_text()).get("evaluation", {}).get("n_test")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                n = None
        if not n:
            split = TEST_SPLIT_SIZES.get(r.get("dataset"), math.nan)
            size = r.get("test_size")
            n = split if missing(size) else min(float(size), split) if not math.isnan(split) else float(size)
        out.append(float(n))
    return pd.Series(out, index=df.index, dtype=float)


def pretrain_seconds(folder, df: pd.DataFrame) -> pd.Series:
    """Wall time (s) of the pretraining each row's model came from: the sum of its epochs' times in
    ``record.json`` (also for trials that loaded a shared model another trial trained; NaN if unknown)."""
    out = []
    for _, r in df.iterrows():
        rec = trial_dir(folder, r["trial_id"]) / "record.json"
        secs = math.nan
        if rec.is_file():
            try:
                hist = json.loads(rec.read_text()).get("history", {}).get("pretrain") or []
                secs = float(sum(e.get("seconds", 0.0) for e in hist)) if hist else math.nan
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
                pass
        out.append(secs)
    return pd.Series(out, index=df.index, dtype=float)


def check_column(df: pd.DataFrame, column: str, what: str = "column") -> None:
    """A UserError naming the closest column if ``column`` is not in ``df``."""
    if column not in df.columns:
        import difflib

        close = difflib.get_close_matches(column, list(df.columns), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{what} {column!r} is not a column of results.csv{hint}")


def to_csv(df: pd.DataFrame, path) -> Path:
    """Write rows as CSV with list/dict cells as JSON (as in results.csv); atomic."""
    out = df.drop(columns=[c for c in df.columns if c.startswith("_")]).copy()
    for c in out.columns:
        if c in JSON_COLUMNS or out[c].map(lambda v: isinstance(v, (list, dict, tuple))).any():
            out[c] = out[c].map(lambda v: json.dumps(list(v) if isinstance(v, tuple) else v)
                                if isinstance(v, (list, dict, tuple)) else v)
    path = Path(path)
    atomic_write_text(path, out.to_csv(index=False))
    return path
