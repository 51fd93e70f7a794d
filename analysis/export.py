"""Writing analysis results: the front as CSV (+ excluded trials, hypervolume JSON, figures) and
the front's models copied into a folder a user can ship or evaluate elsewhere."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from rcsweep.checkpoint import read_meta
from rcsweep.errors import UserError
from rcsweep.fileio import atomic_write_json, atomic_write_text, sha256_file
from rcsweep.results import JSON_COLUMNS

from .common import trial_dir


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


def write_pareto(result, csv_path, draw: bool = True) -> list[Path]:
    """``FILE`` (the front), ``<stem>_excluded.csv``, ``<stem>.json`` (hypervolume and its
    normalisation), ``<stem>_groups.csv`` with ``--by``, and the figure ``<stem>.png/.svg``."""
    csv_path = Path(csv_path)
    stem = csv_path.with_suffix("")
    paths = [to_csv(result.front, csv_path),
             to_csv(result.excluded, stem.with_name(stem.name + "_excluded.csv"))]
    if result.by:
        groups = pd.concat([f.assign(group=str(k)) for k, f in result.group_fronts.items()], ignore_index=True)
        paths.append(to_csv(groups, stem.with_name(stem.name + "_groups.csv")))
    js = stem.with_suffix(".json")
    atomic_write_json(js, result.summary())
    paths.append(js)
    if draw:
        from .plots import plot_pareto

        paths += plot_pareto(result, stem)
    return paths


def export_models(folder, front: pd.DataFrame, out) -> list[Path]:
    """Copy each front trial's ``model.pt``, ``model.json`` (and ``record.json``) to
    ``out/<trial_id>/`` after checking every checksum, and write ``out/pareto.csv``. Nothing is
    copied when any model is missing or corrupted."""
    out = Path(out)
    sources = []
    for tid in front["trial_id"]:
        src = trial_dir(folder, tid)
        pt, meta = read_meta(src)  # CheckpointError (a UserError) when missing
        if meta.get("sha256") and sha256_file(pt) != meta["sha256"]:
            raise UserError(f"{pt} is corrupted: its sha256 does not match model.json; nothing exported")
        sources.append((tid, src))
    if out.exists() and any(out.iterdir()) and not (out / "pareto.csv").is_file():
        raise UserError(f"{out} exists and is not an earlier export (no pareto.csv); choose an empty folder")
    paths = []
    for tid, src in sources:
        dest = out / str(tid)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("model.pt", "model.json", "record.json"):
            if (src / name).is_file():
                shutil.copy2(src / name, dest / name)
                paths.append(dest / name)
    paths.append(to_csv(front, out / "pareto.csv"))
    return paths
