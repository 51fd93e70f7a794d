"""The sweep file's ``tracking`` section: experiment trackers that get each trial's parameters,
per-epoch metrics and final metrics, through Ray Tune's logger callbacks (:mod:`rcsweep.sweep.trackers`).

``tracking: {mlflow: URI, tensorboard: true}``:

- ``mlflow``: an MLflow tracking URI: ``sqlite:///FILE`` (MLflow's default store), ``file:///DIR``
  or a plain folder, or ``http(s)://HOST[:PORT]`` (a tracking server). One MLflow run per trial,
  in the experiment named after the sweep. Needs ``mlflow`` (``pip install mlflow-skinny``).
- ``tensorboard``: ``true`` writes TensorBoard event files (tensorboardX) into each trial's Tune
  folder, ``DIR/tune/<trial_id>/``: ``tensorboard --logdir DIR/tune``.

:func:`parse_tracking` checks the section's form when a sweep file is read; :func:`check_trackers`
checks, before a sweep starts (``rcsweep run``, ``resume`` and ``validate``), that the packages are
installed and the URI can be reached or written. Errors name the field (``tracking.mlflow: ...``).
Nothing here imports Ray or the trackers.
"""
from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from .errors import ConfigError, section_keys

TRACKERS = ("mlflow", "tensorboard")
INSTALL = "pip install --no-warn-conflicts mlflow-skinny tensorboardX (README, Experiment trackers)"


@dataclass(frozen=True)
class TrackingSpec:
    mlflow: Optional[str] = None  # a tracking URI
    tensorboard: bool = False

    def to_dict(self) -> Optional[dict]:
        d = {k: v for k, v in (("mlflow", self.mlflow), ("tensorboard", self.tensorboard)) if v}
        return d or None

    def __bool__(self) -> bool:
        return bool(self.mlflow or self.tensorboard)


def parse_tracking(v) -> TrackingSpec:
    """The ``tracking`` section's form: known trackers, a URI string, a boolean."""
    if v is None:
        return TrackingSpec()
    section_keys(v, "tracking", TRACKERS, "{mlflow: sqlite:///mlflow.db, tensorboard: true}", "tracker")
    uri, tb = v.get("mlflow"), v.get("tensorboard", False)
    if uri is not None and (not isinstance(uri, str) or not uri.strip()):
        raise ConfigError("tracking.mlflow", f"must be a tracking URI (sqlite:///FILE, file:///DIR, http://HOST:PORT), got {uri!r}")
    if not isinstance(tb, bool):
        raise ConfigError("tracking.tensorboard", f"must be true or false, got {tb!r}")
    if uri is not None:
        _local_path(uri)  # the scheme is one rcsweep can check
    return TrackingSpec(uri, tb)


def check_trackers(spec: TrackingSpec, timeout_s: float = 5.0) -> None:
    """Refuse, naming the field, a tracker whose package is missing or whose store cannot be
    reached (a server) or written (a file or folder). Writes nothing."""
    if spec.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        raise ConfigError("tracking.tensorboard", f"needs tensorboardX: {INSTALL}")
    if spec.mlflow is None:
        return
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("tracking.mlflow", f"needs MLflow: {INSTALL}")
    path = _local_path(spec.mlflow)
    if path is None:
        _check_server(spec.mlflow, timeout_s)
        return
    folder_store = not spec.mlflow.startswith("sqlite:")
    if folder_store:  # MLflow makes the folder and its parents
        target = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
        problem = "is not a folder" if not target.is_dir() else None
    else:  # SQLite makes the file, not its folder
        target = path if path.exists() else path.parent
        problem = ("is a folder" if path.is_dir() else None) if path.exists() else \
            (None if target.is_dir() else "is in a folder that does not exist")
    if problem is None and not os.access(target, os.W_OK):
        problem = "cannot be written"
    if problem:
        raise ConfigError("tracking.mlflow", f"{spec.mlflow}: {target if problem == 'is not a folder' else path} {problem}")


def _local_path(uri: str) -> Optional[Path]:
    """The file or folder of a local store; None for a server; ConfigError for other schemes."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or uri == "sqlite:///":
            raise ConfigError("tracking.mlflow", f"{uri}: a SQLite store is sqlite:///FILE (four slashes for an absolute path)")
        return Path(uri[len("sqlite:///"):]).expanduser()
    if scheme == "file":
        return Path(urlparse(uri).path).expanduser()
    if scheme in ("http", "https"):
        return None
    if scheme == "" or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return Path(uri).expanduser()
    raise ConfigError("tracking.mlflow", f"{uri}: rcsweep checks and supports sqlite:///FILE, file:///DIR, "
                                         f"a folder, or http(s)://HOST[:PORT]; not {scheme}:")


def _check_server(uri: str, timeout_s: float) -> None:
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # something answers; MLflow's own errors say more at the first request
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigError("tracking.mlflow", f"{uri}: cannot reach the tracking server ({reason})") from None
