"""GPU placement on a real local Ray with declared GPUs and no CUDA (``ray.cluster_utils.Cluster``:
a head node with 6 CPUs, a worker node declaring 4 CPUs and 2 GPUs it does not have), one cluster
for all three sweeps:

- ``gpu_fallback: cpu``, ``resources: {cpu: 1, gpu: 0.5}``, ``max_concurrent: 4``: four trials run
  at once (counted from their records' start and end times), two on each declared GPU, each
  recording the GPU ids Ray assigned it and the CPU it ran on instead;
- without the option, the trial fails in one line naming the node and the option;
- a fractional GPU request no single node can meet with its CPUs is refused before anything starts.
"""
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import json, sys
    from ray.cluster_utils import Cluster
    from rcsweep.errors import ConfigError
    from rcsweep.sweep.runner import run_sweep

    sweeps, storage = json.loads(sys.argv[1]), sys.argv[2]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 6, "include_dashboard": False})
    gpu_node = cluster.add_node(num_cpus=4, num_gpus=2)
    cluster.wait_for_nodes()
    out = {"gpu_node": gpu_node.node_id}
    try:
        for key, sweep in sweeps.items():
            try:
                o = run_sweep(sweep, storage=storage, address=cluster.address, quiet=True)
                out[key] = {"finished": o.finished, "failed": o.failed, "folder": str(o.folder)}
            except ConfigError as e:
                out[key] = {"refused": str(e)}
    finally:
        cluster.shutdown()
    print(json.dumps(out))
''')

TINY = {"dataset": "digits", "batch_size": 8, "lr": 0.05, "test_size": 40, "eval_steps": 2, "eval_restarts": 1,
        "eps_eval": 0.1}
# one shared pretraining (every trial waits for it, so the four overlap), then a short clean fine-tuning
FALLBACK = {"name": "fallback", "fixed": {**TINY, "pretrain_epochs": 8, "finetune": "clean"},
            "space": {"finetune_epochs": {"choice": [1, 2, 3, 4]}}, "search": "grid", "max_concurrent": 4,
            "resources": {"cpu": 1, "gpu": 0.5}, "gpu_fallback": "cpu", "max_failures": 0}
NO_FALLBACK = {"name": "nofallback", "fixed": {**TINY, "pretrain_epochs": 1}, "space": {"seed": {"choice": [0]}},
               "search": "grid", "max_concurrent": 1, "resources": {"cpu": 1, "gpu": 0.5}, "max_failures": 0}
# 5 CPUs with half a GPU: the GPU node has 4 CPUs, the 6-CPU head no GPU
UNMEETABLE = {**NO_FALLBACK, "name": "unmeetable", "resources": {"cpu": 5, "gpu": 0.5}}


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    storage = tmp_path_factory.mktemp("gpu_placement")
    root = str(Path(__file__).resolve().parent.parent)  # the nodes import rcsweep from this checkout
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    sweeps = {"fallback": FALLBACK, "no_fallback": NO_FALLBACK, "unmeetable": UNMEETABLE}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(sweeps), str(storage)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), storage


def _records(folder):
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("trials/*/record.json"))]


def _most_at_once(intervals) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda t: (t[0], t[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_four_trials_share_two_declared_gpus_at_once_and_record_where_they_ran(cluster_run):
    out, _ = cluster_run
    assert out["fallback"]["finished"] == 4 and out["fallback"]["failed"] == 0
    records = _records(out["fallback"]["folder"])
    runtimes = [r["runtime"] for r in records]
    assert len(runtimes) == 4
    first_end, last_start = min(r["ended"] for r in runtimes), max(r["started"] for r in runtimes)
    print(f"all four ran at once for {first_end - last_start:.1f} s")
    assert _most_at_once([(r["started"], r["ended"]) for r in runtimes]) == 4
    assert all(len(r["gpu_ids"]) == 1 for r in runtimes)  # half a GPU each: one id
    assert Counter(r["gpu_ids"][0] for r in runtimes) == {"0": 2, "1": 2}  # two trials per declared GPU
    for r in runtimes:
        assert r["device"] == "cpu" and r["cuda_available"] is False and r["peak_gpu_memory_bytes"] is None
        assert "ran on the CPU (gpu_fallback: cpu)" in r["fallback"] and out["gpu_node"][:8] in r["node"]
    # the one shared model, trained by one trial and loaded onto the CPU by the three others
    from rcsweep.sweep.store import count_trainings

    assert list(count_trainings(out["fallback"]["folder"]).values()) == [1]


@pytest.mark.slow
def test_without_the_option_the_trial_fails_in_one_line_naming_node_and_option(cluster_run):
    out, _ = cluster_run
    assert out["no_fallback"]["finished"] == 0 and out["no_fallback"]["failed"] == 1
    from rcsweep.results import read_rows

    (row,) = read_rows(out["no_fallback"]["folder"])
    error = row["error"]
    assert row["status"] == "failed" and "\n" not in error
    assert error.startswith("DeviceUnavailable: node ") and out["gpu_node"][:8] in error
    assert "CUDA is not usable" in error and "set 'gpu_fallback: cpu' in the sweep file" in error
    assert not _records(out["no_fallback"]["folder"])


@pytest.mark.slow
def test_a_fractional_request_no_node_can_meet_is_refused_before_any_trial(cluster_run):
    out, storage = cluster_run
    assert out["unmeetable"]["refused"] == ("resources: no single node of 2 Ray node(s) has 5 CPUs and 0.5 GPUs "
                                            "together")
    assert not (storage / "unmeetable").exists()
