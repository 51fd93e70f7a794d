"""Sweeps on a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): a sweep
completes, its trials run on both nodes, and every node shares the one pretrained model per
configuration; a sweep whose worker node dies mid-trial still finishes every trial, the lost one
continuing on the head node from its last stage checkpoint."""
import json
import os
import subprocess
import sys
import textwrap
import time
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
             "space": {"finetune": {"choice": ["none", "clean"]}, "finetune_epochs": {"choice": [1, 2, 3]}}, "num_samples": 4, "max_concurrent": 2}
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


# The worker node is removed (its raylet and workers SIGKILLed) as soon as a trial running there has
# checkpointed its first fine-tuning epoch; the head node (1 CPU) then runs the rest of the sweep.
KILL_SCRIPT = textwrap.dedent('''
    import json, sys, threading, time
    from pathlib import Path
    from ray.cluster_utils import Cluster
    from rcsweep.sweep.runner import run_sweep

    sweep, storage = json.loads(sys.argv[1]), sys.argv[2]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    trials = Path(storage) / sweep["name"] / "trials"
    killed = {}

    def kill_worker_mid_trial():
        deadline = time.time() + 300
        while time.time() < deadline:
            for log in trials.glob("*/stages.jsonl"):
                entries = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
                if any(e["node"] == worker.node_id and e["stage"] == "finetuning" for e in entries):
                    killed.update(trial_id=log.parent.name, logged_before=len(entries), time=time.time())
                    cluster.remove_node(worker, allow_graceful=False)
                    killed["removed_after_s"] = time.time() - killed["time"]
                    return
            time.sleep(0.1)

    watcher = threading.Thread(target=kill_worker_mid_trial, daemon=True)
    watcher.start()
    try:
        out = run_sweep(sweep, storage=storage, address=cluster.address, quiet=True)
        watcher.join(timeout=60)
    finally:
        head = cluster.head_node.node_id
        cluster.shutdown()
    print(json.dumps({"exit_code": out.exit_code, "finished": out.finished, "folder": str(out.folder),
                      "killed": killed, "worker": worker.node_id, "head": head}))
''')


@pytest.mark.slow
def test_worker_node_lost_mid_sweep_its_trial_resumes_from_its_checkpoint_on_the_head(tmp_path):
    from rcsweep.results import load_results
    from rcsweep.sweep.store import count_trainings

    # one pretraining configuration; every trial checkpoints after compression and after each of 6
    # adversarial fine-tuning epochs (~0.6 s each here), so the kill lands mid-trial
    sweep = {"name": "nodeloss",
             "fixed": {"dataset": "digits", "pretrain_epochs": 3, "batch_size": 16, "lr": 0.1, "train_size": 400,
                       "test_size": 50, "eval_steps": 2, "eval_restarts": 1, "compression": "prune_structured",
                       "finetune": "adversarial", "finetune_epochs": 6, "finetune_lr": 0.02, "attack_steps": 5},
             "space": {"sparsity": {"uniform": [0.2, 0.6]}}, "num_samples": 4, "max_concurrent": 2,
             "max_failures": 2}
    root = str(Path(__file__).resolve().parent.parent)  # the nodes import rcsweep from this checkout
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    t = time.time()
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, json.dumps(sweep), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"sweep with node loss: {time.time() - t:.0f} s; {out}")
    killed = out["killed"]
    assert killed, "no trial on the worker node reached a fine-tuning checkpoint: nothing was killed"
    assert "removed_after_s" in killed, f"cluster.remove_node failed: {proc.stderr[-3000:]}"
    assert out["exit_code"] == 0 and out["finished"] == 4
    df = load_results(out["folder"])
    assert len(df) == 4 and df["trial_id"].is_unique and set(df["status"]) == {"finished"}
    folder = Path(out["folder"])
    assert {p.name for p in (folder / "trials").iterdir()} == set(df["trial_id"])  # nothing set aside or extra

    log = [json.loads(line) for line in (folder / "trials" / killed["trial_id"] / "stages.jsonl").read_text().splitlines()]
    # the worker may log another epoch between the watcher's look and the SIGKILL landing: split where
    # the head node takes over, and check that the worker had logged at least what the watcher saw
    split = next((i for i, e in enumerate(log) if e["node"] != out["worker"]), len(log))
    before, after = log[:split], log[split:]
    assert len(before) >= killed["logged_before"]
    assert after and {e["node"] for e in after} == {out["head"]}  # the rest ran on the head, none on the dead node
    done = max(e["epochs_done"] for e in before if e["stage"] == "finetuning")
    resume = after[0]
    assert resume["stage"] == "resume" and resume["from_stage"] == "finetuning" and resume["epochs_done"] >= done
    steps = [(e["stage"], e.get("epochs_done")) for e in log if e["stage"] != "resume"]
    assert len(steps) == len(set(steps)), f"a checkpointed stage ran twice: {steps}"  # nothing redone
    assert [e["epochs_done"] for e in before if e["stage"] == "finetuning"] == list(range(1, done + 1))
    assert [e["epochs_done"] for e in after if e["stage"] == "finetuning"] == list(range(resume["epochs_done"] + 1, 7))
    assert log[-1]["stage"] == "evaluated" and sum(e["stage"] == "evaluated" for e in log) == 1
    assert list(count_trainings(folder).values()) == [1]
