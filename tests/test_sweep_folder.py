"""The sweep folder's own files: storage paths, the driver record, processes a killed driver left."""
import subprocess
import sys

import pytest

from rcsweep.errors import UserError


def test_storage_is_a_local_path_or_file_uri(tmp_path):
    from rcsweep.sweep.folder import resolve_storage

    assert resolve_storage(f"file://{tmp_path}") == tmp_path.resolve()
    assert resolve_storage(str(tmp_path / "a" / ".." / "b")) == (tmp_path / "b").resolve()
    with pytest.raises(UserError, match="s3:// storage is not supported"):
        resolve_storage("s3://bucket/sweeps")


def test_driver_record_tells_a_running_driver_from_a_dead_one(tmp_path):
    from rcsweep.sweep.folder import clear_driver, driver_alive, read_driver, write_driver

    write_driver(tmp_path)
    info = read_driver(tmp_path)
    assert driver_alive(info) is True
    assert driver_alive({**info, "proc_start": "0"}) is False  # same pid, another process
    assert driver_alive({**info, "host": "elsewhere"}) is None
    clear_driver(tmp_path)
    assert read_driver(tmp_path) is None and driver_alive(None) is False


def test_processes_left_by_a_killed_driver_are_stopped_by_pid_and_start_time():
    from rcsweep.sweep.folder import _proc_start, stop_left_behind

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        start = _proc_start(child.pid)
        assert stop_left_behind({"ray_processes": [[other.pid, "0"]]}) == 0  # not the recorded process
        assert stop_left_behind({"ray_processes": [[child.pid, start]]}) == 1
        assert child.wait(timeout=10) == -9 and other.poll() is None
    finally:
        for p in (child, other):
            if p.poll() is None:
                p.kill()
