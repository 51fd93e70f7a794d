"""A real local Ray for the sweep tests, started once per test session.

Test modules import the fixture (``from conftest_ray import ray_local``). Ray is started by the
first module that asks and shut down at the end of the session; a module that finds Ray running
(another module's fixture, or a caller's) uses it as it is.
"""
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """The address of a local Ray with 2 CPUs and no dashboard (tests can hand it to subprocesses)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray workers (and test subprocesses) import rcsweep from this checkout, not from wherever the
    # editable install happens to point
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    import ray

    owned = not ray.is_initialized()
    if owned:
        # address="local": a new Ray, never a cluster another job started on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    if owned:
        ray.shutdown()
