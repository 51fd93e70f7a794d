"""``rcsweep export``: the chosen trials' saved models (the front's, or named ones) copied, checksums
checked first, into a folder a user can ship or evaluate elsewhere, with their rows as
``pareto.csv``. Which rows: :func:`analysis.commands.chosen_rows`."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from analysis.common import to_csv, trial_dir

from ..checkpoint import read_meta
from ..errors import UserError
from ..fileio import sha256_file


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
