"""The sweep folder ``STORAGE/NAME``, and the files in it that belong to no single trial.

``sweep.yaml`` is the validated sweep as run (``num_samples`` resolved) plus ``provenance``: the
command line, package and library versions, git commit when known, and one entry per resume.
``driver.json`` names the driver process while one runs (so ``rcsweep status`` can tell a running
sweep from a stopped one, and ``rcsweep resume`` can refuse to start a second driver).
``search.json`` says why the searcher (:mod:`.search`) ended the sweep before its budget, when it
did (``{"exhausted": "54 distinct configurations, all run"}``).
Also here: ``results.csv`` (:mod:`rcsweep.results`), ``trials/``, ``pretrained/`` and ``tune/``
(Ray Tune's experiment state). Nothing in this module imports Ray.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from ..errors import UserError
from ..fileio import atomic_write_json, atomic_write_text
from ..results import COLUMNS, RESULTS_FILE, locked, read_rows
from ..sweepfile import SWEEP_FILE, SweepSpec, load_sweep, read_sweep_folder

TUNE_DIR = "tune"
DRIVER_FILE = "driver.json"
SEARCH_FILE = "search.json"  # why the searcher stopped early, for rcsweep status
ES_STATE_FILE = "early_stopping.json"  # every rung's points and decisions (rcsweep.sweep.scheduler)
DEFAULT_STORAGE = "rcsweep-results"


def resolve_storage(storage) -> Path:
    """The storage root as an absolute local path: a path or a ``file://`` URI."""
    text = str(storage if storage is not None else DEFAULT_STORAGE)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "file":
            raise UserError(f"--storage: {scheme}:// storage is not supported yet; use a local path or file:// URI "
                            f"(for a cluster, a shared file system such as NFS mounted at the same path on every node)")
        text = rest
    return Path(text).expanduser().resolve()


def resolve_spec(source, name=None, sets: dict | None = None, **overrides) -> SweepSpec:
    """The sweep as it will run: the file (or dict) with ``num_samples``, ``max_concurrent``,
    ``search_seed`` overrides applied and ``num_samples`` resolved, so that a resume counts from
    the same number. A grid sweep cannot have more trials than its points and references.
    ``sets``: trial parameters fixed for the whole sweep (``rcsweep run --set seed=1``); a parameter
    the file searches is no longer searched."""
    spec = load_sweep(source, name)
    if sets:
        space = {k: v for k, v in spec.to_dict()["space"].items() if k not in sets}
        spec = spec.replace(fixed={**spec.fixed, **sets}, space=space)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        spec = spec.replace(**changes)
    return spec.replace(num_samples=spec.total_trials())  # validated again: a grid's count is checked there


def new_folder(storage, spec: SweepSpec) -> Path:
    """``STORAGE/NAME`` for a new sweep; refused if it exists (a sweep is continued, not rerun)."""
    folder = resolve_storage(storage) / spec.name
    if folder.exists():
        raise UserError(f"{folder} already exists: continue it with 'rcsweep resume {folder}' or choose another --name")
    return folder


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def provenance(argv=None, source=None) -> dict:
    """Where a sweep (or a resume) came from: command line, versions, git commit, host, time."""
    import numpy
    import optuna
    import ray
    import torch

    from .. import __version__

    return {"command": " ".join(sys.argv if argv is None else ["rcsweep", *argv]), "time": now(),
            "host": socket.gethostname(), "source": str(source) if source else None, "git_commit": git_commit(),
            "versions": {"rcsweep": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
                         "ray": ray.__version__, "optuna": optuna.__version__, "numpy": numpy.__version__}}


def git_commit() -> str | None:
    """The commit of the rcsweep checkout this runs from, when it is one (editable installs)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def write_spec(folder: Path, spec: SweepSpec, prov: dict, resumes: list | None = None) -> None:
    doc = {**spec.to_dict(), "provenance": {**prov, "resumes": list(resumes or [])}}
    atomic_write_text(folder / SWEEP_FILE, yaml.safe_dump(doc, sort_keys=False))


def read_sweep_file(folder) -> tuple[SweepSpec, dict]:
    """``(spec, provenance)`` from ``folder/sweep.yaml`` (:func:`rcsweep.sweepfile.read_sweep_folder`)."""
    return read_sweep_folder(folder)


def read_spec(folder) -> SweepSpec:
    return read_sweep_file(folder)[0]


def add_resume(folder: Path, spec: SweepSpec, entry: dict) -> None:
    """Record a resume (and a changed ``num_samples``) in ``sweep.yaml``."""
    _, prov = read_sweep_file(folder)
    resumes = prov.pop("resumes", [])
    write_spec(folder, spec, prov, resumes + [entry])


def remove_rows(folder, trial_ids) -> None:
    """Drop rows from ``results.csv`` (trials Ray Tune never recorded; see the runner)."""
    gone = set(trial_ids)
    with locked(Path(folder)):
        rows = [r for r in read_rows(folder) if r["trial_id"] not in gone]
        fields = list(COLUMNS) + sorted({k for r in rows for k in r} - set(COLUMNS))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(Path(folder) / RESULTS_FILE, buf.getvalue())


def search_exhausted(folder) -> str | None:
    """Why the sweep in ``folder`` ended before its budget (every configuration of a finite space
    ran), or None."""
    path = Path(folder) / SEARCH_FILE
    try:
        return json.loads(path.read_text()).get("exhausted") if path.is_file() else None
    except (OSError, ValueError):
        return None


# -- the driver running a sweep ----------------------------------------------------------------
def write_driver(folder: Path, **extra) -> None:
    atomic_write_json(folder / DRIVER_FILE, {"pid": os.getpid(), "host": socket.gethostname(), "started": now(),
                                             "proc_start": _proc_start(os.getpid()), **extra})


def read_driver(folder) -> dict | None:
    try:
        return json.loads((Path(folder) / DRIVER_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def clear_driver(folder: Path) -> None:
    try:
        (folder / DRIVER_FILE).unlink()
    except FileNotFoundError:
        pass


def driver_alive(info: dict | None) -> bool | None:
    """Whether the driver in ``info`` still runs: True/False on this host, None elsewhere."""
    if not info:
        return False
    if info.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, KeyError):
        return None
    return _proc_start(int(info["pid"])) == info.get("proc_start")  # else the pid was reused


def own_ray_processes() -> list:
    """``[[pid, start time]]`` of the Ray processes this process started (its local Ray's GCS,
    raylet and agents): a driver killed with SIGKILL cannot stop them, its resume can."""
    return [[pid, _proc_start(pid)] for pid in descendants(os.getpid()) if "ray" in _cmdline(pid)]


def descendants(root: int) -> list[int]:
    """The pids of every process below ``root`` (children, their children, ...), from /proc."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        kids = [pid for pid, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


def stop_left_behind(info: dict | None) -> int:
    """SIGKILL (some Ray agents ignore SIGTERM) the Ray processes a dead driver left, each by its
    pid and only while it is the same process (same start time). Returns how many."""
    stopped = 0
    for pid, start in (info or {}).get("ray_processes", []):
        if start is not None and _proc_start(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
                stopped += 1
            except ProcessLookupError:
                pass
    return stopped


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _proc_start(pid: int) -> str | None:
    """The start time of a process (Linux), to tell a process from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
