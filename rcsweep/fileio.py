"""Atomic file writes: a temporary file in the same folder, fsync, then rename. A process killed
mid-write leaves the previous version intact. The file gets the permissions an ordinary ``open``
would give it (0666 less the umask), not the temporary file's 0600: sweep folders on shared
storage are read by other users and nodes."""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    return 0o666 & ~_umask()


def make_folder(path, what: str) -> Path:
    """Create the output folder ``path`` and its parents (an existing one is fine); a UserError
    naming ``what`` (e.g. ``--out``) when it or a parent is a file, not a traceback."""
    from .errors import UserError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{what} {path}: a file is in the way of this folder") from None
    return path


def temp_folder(parent, prefix: str) -> Path:
    """A new empty folder in ``parent`` for files that are renamed into place once all are written,
    with the permissions ``mkdir`` would give it (0777 less the umask; ``mkdtemp`` makes it 0700)."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(path, 0o777 & ~_umask())
    return path


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
