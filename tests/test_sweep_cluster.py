"""A sweep on a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): it completes,
its trials run on both nodes, and every node shares the one pretrained model per configuration."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import json, sys
    from ray.cluster_utils import Cluster
    from rcsweep.sweep.runner import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        out = run_sweep(json.loads(sys.argv[1]), storage=sys.argv[2], address=cluster.address, quiet=True)
    finally:
        cluster.shutdown()
    print(json.dumps({"exit_code": out.exit_code, "finished": out.finished, "folder": str(out.folder)}))
''')


@pytest.mark.slow
def test_two_node_cluster_sweep_completes_and_uses_both_nodes(tmp_path):
    from rcsweep.results import load_results
    from rcsweep.sweep.store import count_trainings

    sweep = {"name": "cluster", "fixed": {"dataset": "digits", "pretrain_epochs": 3, "batch_size": 16, "lr": 0.1,
                                          "train_size": 400, "test_size": 50, "eval_steps": 2, "eval_restarts": 1},
             "space": {"finetune": {"choice": ["none", "clean"]}}, "num_samples": 4, "max_concurrent": 2}
    root = str(Path(__file__).resolve().parent.parent)  # the nodes import rcsweep from this checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(sweep), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["exit_code"] == 0 and out["finished"] == 4
    assert "node-local" not in proc.stderr  # both nodes see the storage: no warning
    df = load_results(out["folder"])
    assert len(df) == 4 and set(df["status"]) == {"finished"}
    nodes = {json.loads(line)["node"] for path in (tmp_path / "cluster" / "trials").glob("*/stages.jsonl")
             for line in path.read_text().splitlines()}
    assert len(nodes) == 2
    assert list(count_trainings(out["folder"]).values()) == [1]
