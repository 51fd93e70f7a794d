"""Sweeps on a real local Ray: a tiny sweep completes (one trial fails and is recorded),
pretraining is shared, the sweep is extended and its failed trial retried, and the sweep of a
SIGKILLed driver is resumed with no finished trial or checkpointed stage run twice; a constrained
sweep keeps its infeasible trials off the front and tells them to the study as infeasible."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest_ray import ray_local  # noqa: F401  (session fixture)

from rcsweep import TrialConfig, load_model, load_results
from rcsweep.cli import main

FIXED = dict(dataset="digits", pretrain_epochs=3, batch_size=16, lr=0.1, train_size=400, test_size=50,
             eval_steps=2, eval_restarts=1)
# 5 trials: two references (the second diverges at once: a trial that fails), three searched
TINY = {"name": "tiny", "fixed": {**FIXED, "finetune_epochs": 2, "finetune_lr": 0.02},
        "space": {"finetune": {"choice": ["none", "clean"]}, "seed": {"choice": [0, 1, 2]}},
        "references": [{"finetune": "none", "seed": 0}, {"finetune": "none", "lr": 1.0e6}],
        "num_samples": 5, "max_concurrent": 2, "max_failures": 1}


def stage_logs(folder) -> dict:
    """{trial_id: [stage entries]} from every trial's stages.jsonl."""
    return {p.parent.name: [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted((folder / "trials").glob("*/stages.jsonl"))}


def trainings(folder) -> dict:
    """{pretrained model: [events]} from the store's logs."""
    return {p.parent.name: [json.loads(line)["event"] for line in p.read_text().splitlines()]
            for p in (folder / "pretrained").glob("*/log.jsonl")}


def start_driver(sweep: dict, tmp_path, address: str, until, timeout_s: float = 240):
    """``rcsweep run`` of ``sweep`` (named by its ``name``) in a subprocess on the Ray at ``address``,
    into ``tmp_path/store``, watched until ``until(results.csv rows)`` holds, the driver exits or
    ``timeout_s`` passes. Returns ``(driver, sweep folder)``."""
    path = tmp_path / f"{sweep['name']}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    folder = tmp_path / "store" / sweep["name"]
    env = {**os.environ, "RAY_ADDRESS": address}
    driver = subprocess.Popen([sys.executable, "-m", "rcsweep.cli", "run", str(path), "--storage", str(tmp_path / "store")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while time.time() < deadline and driver.poll() is None:
        rows = load_results(folder) if (folder / "results.csv").is_file() else None
        if rows is not None and until(rows):
            break
        time.sleep(0.3)
    return driver, folder


@pytest.fixture(scope="module")
def tiny(ray_local, tmp_path_factory):  # noqa: F811
    from rcsweep.sweep.runner import run_sweep

    outcome = run_sweep(TINY, storage=tmp_path_factory.mktemp("store"))
    return outcome


def test_tiny_sweep_completes_and_records_the_failed_trial(tiny):
    folder = tiny.folder
    assert tiny.exit_code == 1 and (tiny.planned, tiny.finished, tiny.failed) == (5, 4, 1)
    df = load_results(folder)
    assert len(df) == 5 and df["status"].value_counts().to_dict() == {"finished": 4, "failed": 1}
    failed = df[df["status"] == "failed"].iloc[0]
    assert failed["lr"] == 1.0e6 and failed["error"].startswith("TrainingCollapsed: loss became nan")
    # a collapse is deterministic: Tune's retry (max_failures 1) failed at once, without training again
    assert failed["error"].endswith("(not retried: it collapsed before)")
    assert (folder / "trials" / failed["trial_id"] / "collapsed.json").is_file()
    failed_key = next(k for k, events in trainings(folder).items() if "done" not in events)
    assert trainings(folder)[failed_key] == ["start", "collapsed"]  # the store records it: not trained again
    done = df[df["status"] == "finished"]
    assert done["robust_acc"].notna().all() and done["time_finetune_s"].notna().all()
    ref = df[df["is_reference"]]
    assert len(ref) == 2 and set(ref["finetune"]) == {"none"}
    for trial_id in done["trial_id"]:
        record = json.loads((folder / "trials" / trial_id / "record.json").read_text())
        assert TrialConfig.from_flat(record["params"]).finetune in ("none", "clean")
        assert not (folder / "trials" / trial_id / "checkpoints").exists()  # cleared once finished
    model = load_model(folder / "trials" / done["trial_id"].iloc[0])
    assert sum(p.numel() for p in model.parameters()) > 0
    doc = yaml.safe_load((folder / "sweep.yaml").read_text())
    assert doc["num_samples"] == 5 and doc["provenance"]["versions"]["ray"] and doc["provenance"]["command"]
    assert tiny.pareto and set(tiny.pareto) <= set(done["trial_id"])


def test_pretraining_ran_once_per_distinct_configuration(tiny):
    from rcsweep.sweep.store import count_trainings, pretrain_id

    df = load_results(tiny.folder).query("status == 'finished'")
    needed = {pretrain_id(TrialConfig(**{**FIXED, "seed": int(s)})) for s in df["seed"]}
    counts = count_trainings(tiny.folder)
    assert {key: n for key, n in counts.items() if n} == {key: 1 for key in needed}
    assert sorted(counts.values()) == [0] + [1] * len(needed)  # the diverged pretraining never finished
    assert sum(e["stage"] == "pretrain" for log in stage_logs(tiny.folder).values() for e in log) == len(needed)


def test_status_reads_results_csv(tiny, capsys):
    assert main(["status", str(tiny.folder)]) == 0
    out = capsys.readouterr().out
    assert "4 finished" in out and "1 failed" in out and "(stopped)" in out
    assert "usable trials, hypervolume " in out.split("Pareto front: ")[1].splitlines()[0]


def test_a_sweep_run_with_pretrained_from_loads_the_other_sweeps_models(tiny, tmp_path, capsys):
    """``rcsweep run --pretrained-from``: a matching pretraining is loaded, never trained again;
    one that no model matches is trained as usual; the provenance names what was copied."""
    from rcsweep.sweep.runner import run_sweep
    from rcsweep.sweep.store import pretrain_id

    sweep = {"name": "reuse", "fixed": {**FIXED, "finetune": "none"}, "space": {"seed": {"choice": [0, 3]}},
             "search": "grid", "max_concurrent": 1}
    out = run_sweep(sweep, storage=tmp_path, pretrained_from=tiny.folder, quiet=True)
    assert (out.finished, out.failed) == (2, 0)
    events = trainings(out.folder)
    seeded, fresh = pretrain_id(TrialConfig(**{**FIXED, "seed": 0})), pretrain_id(TrialConfig(**{**FIXED, "seed": 3}))
    assert events[seeded] == trainings(tiny.folder)[seeded] == ["start", "done"]  # copied, not run here
    assert events[fresh] == ["start", "done"]  # no model for seed 3: trained here
    assert sum(e["stage"] == "pretrain" for log in stage_logs(out.folder).values() for e in log) == 1
    prov = yaml.safe_load((out.folder / "sweep.yaml").read_text())["provenance"]["pretrained_from"]
    assert prov["source"] == str(tiny.folder.resolve()) and seeded in prov["models"]
    # resuming a complete sweep has nothing to do: it says so and leaves the folder as it was
    from rcsweep.sweep.runner import resume_sweep

    before = (out.folder / "sweep.yaml").read_text(), (out.folder / "results.csv").read_text()
    again = resume_sweep(out.folder)
    assert (again.finished, again.exit_code) == (2, 0) and "nothing to resume" in capsys.readouterr().out
    assert ((out.folder / "sweep.yaml").read_text(), (out.folder / "results.csv").read_text()) == before


def test_resume_extends_and_retries_failed_without_rerunning_a_finished_trial(tiny):
    from rcsweep.sweep.runner import resume_sweep

    before = stage_logs(tiny.folder)
    runs_before = trainings(tiny.folder)
    outcome = resume_sweep(tiny.folder, num_samples=6, retry_failed=True)
    assert (outcome.planned, outcome.finished, outcome.failed, outcome.exit_code) == (6, 5, 1, 1)
    after = stage_logs(tiny.folder)
    assert len(after) == 5 and all(after[t] == log for t, log in before.items())  # + the failed one, no log
    runs = trainings(tiny.folder)
    assert all(events == ["start", "done"] for events in runs.values() if "done" in events)
    failed_key = next(k for k, events in runs.items() if "done" not in events)
    # the failed trial, and only it, ran again: --retry-failed cleared the store's collapse record
    assert runs[failed_key] == runs_before[failed_key] + ["start", "collapsed"]
    failed = load_results(tiny.folder).query("status == 'failed'").iloc[0]
    assert failed["error"] == "TrainingCollapsed: loss became nan (lr too high?)"  # trained again, not skipped
    assert (tiny.folder / "trials" / failed["trial_id"] / "collapsed.json").is_file()
    assert yaml.safe_load((tiny.folder / "sweep.yaml").read_text())["provenance"]["resumes"][0]["num_samples"] == 6


def test_killed_driver_sweep_resumes_with_no_stage_run_twice(ray_local, tmp_path, capsys):  # noqa: F811
    from rcsweep.sweep.runner import resume_sweep

    sweep = {**TINY, "name": "killed", "num_samples": 4, "references": TINY["references"][:1], "max_failures": 0,
             "fixed": {**TINY["fixed"], "finetune_epochs": 3},
             "space": {**TINY["space"], "compression": {"choice": ["none", "prune_structured"]}}}
    driver, folder = start_driver(sweep, tmp_path, ray_local, lambda rows: (rows["status"] == "finished").sum() >= 1)
    assert driver.poll() is None, "the sweep ended before it could be interrupted"
    assert main(["status", str(folder)]) == 0  # status works while the sweep runs
    assert "(running)" in capsys.readouterr().out
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert main(["status", str(folder)]) == 0 and "(stopped)" in capsys.readouterr().out
    done_before = set(load_results(folder).query("status == 'finished'")["trial_id"])
    logs_before = stage_logs(folder)
    outcome = resume_sweep(folder)
    df = load_results(folder)
    assert outcome.exit_code == 0 and len(df) == 4 and set(df["status"]) == {"finished"}
    logs = stage_logs(folder)
    for trial_id, log in logs.items():
        if trial_id in done_before:
            assert log == logs_before[trial_id]  # a finished trial never runs again
        steps = [(e["stage"], e.get("epochs_done")) for e in log if e["stage"] != "resume"]
        assert len(steps) == len(set(steps)), f"{trial_id} repeated a checkpointed stage: {steps}"
    # no model trained to the end twice (a trial set aside after the kill may have begun one that
    # the resumed sampler, which continues from the journal, no longer asks for)
    assert all(events.count("done") <= 1 for events in trainings(folder).values())
    # the study survived the SIGKILL: every trial the journal held as running is closed or told
    from rcsweep.sweep.search import open_study
    from rcsweep.sweepfile import load_sweep

    study = open_study(folder, load_sweep(sweep, "killed"))
    assert not [t.number for t in study.trials if t.state.name == "RUNNING"]
    rows = set(load_results(folder)["trial_id"])
    told = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs.get("repeat_of")
            and t.user_attrs.get("tune_trial", "reference") in rows | {"reference"}]
    assert len(told) == 4  # the reference and the 3 searched trials of results.csv, each told once
    assert len({t.user_attrs["config_key"] for t in told}) == 4


# dense digits_cnn: 32 x 22954 parameters = 734,528 bits; pruned to 0.9 (bitmask + nonzeros): ~1e5
CONSTRAINED = {**TINY, "name": "constrained", "fixed": {**FIXED, "sparsity": 0.9},
               "space": {"compression": {"choice": ["none", "prune"]}, "seed": {"choice": [0, 1]}},
               "references": [{"compression": "none", "seed": 0}], "num_samples": 4, "max_failures": 0,
               "constraints": {"model_bits": "<= 4e5"}}


def test_a_constrained_sweep_keeps_infeasible_trials_off_the_front(ray_local, tmp_path, capsys):  # noqa: F811
    """The dense trials violate ``model_bits <= 4e5``: flagged infeasible with the reason in
    results.csv, off the front (status's and the analysis's), and told to the study with a
    constraint value > 0; the pruned ones are feasible (<= 0). The reference covers one of the
    space's 4 configurations, so the 3 searched trials run the other 3."""
    from analysis.pareto import pareto_analysis
    from rcsweep.sweep.runner import run_sweep
    from rcsweep.sweep.search import open_study
    from rcsweep.sweep.summary import pareto_front
    from rcsweep.sweepfile import load_sweep
    from rcsweep.trial_status import parse_flags

    out = run_sweep(CONSTRAINED, storage=tmp_path, quiet=True)
    df = load_results(out.folder)
    assert out.exit_code == 0 and len(df) == 4 and set(df["status"]) == {"finished"}
    assert sorted(zip(df["compression"], df["seed"])) == [("none", 0), ("none", 1), ("prune", 0), ("prune", 1)]
    infeasible = df[["infeasible" in parse_flags(f) for f in df["flags"]]]
    assert sorted(infeasible["compression"]) == ["none", "none"] and (infeasible["model_bits"] > 4e5).all()
    assert all(r.startswith("model_bits ") and r.endswith(" > 400000") for r in infeasible["infeasible_reason"])
    feasible = df[df["compression"] == "prune"]
    assert (feasible["model_bits"] <= 4e5).all() and not feasible["infeasible_reason"].fillna("").any()

    spec = load_sweep(CONSTRAINED)
    bad = set(infeasible["trial_id"])
    assert not bad & set(pareto_front(df, spec.objectives)["trial_id"])  # rcsweep status's front
    assert not bad & set(out.pareto) and out.pareto
    analysed = pareto_analysis(df, ",".join(f"{m}:{d}" for m, d in spec.objectives))  # rcsweep pareto's
    assert not bad & set(analysed.front["trial_id"]) and bad <= set(analysed.excluded["trial_id"])
    assert main(["status", str(out.folder)]) == 0
    flagged = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("flagged (off the front): "))
    assert flagged.startswith("flagged (off the front): 2 infeasible (") and all(t in flagged for t in bad)  # which ones

    study = open_study(out.folder, spec)
    told = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs.get("repeat_of")]
    flat = [json.loads(t.user_attrs["config_key"]) for t in told]  # the reference and the 3 searched trials
    assert sorted((c["compression"], c["seed"]) for c in flat) == [("none", 0), ("none", 1), ("prune", 0), ("prune", 1)]
    for t, c in zip(told, flat):
        assert (t.constraints["model_bits <= 400000"] > 0) == (c["compression"] == "none")
        assert t.constraints["trusted"] == 0.0


LOOPBACK_SCRIPT = '''
import json, os, socket, struct, ray
from pathlib import Path
os.environ.pop("RAY_ADDRESS", None)
from rcsweep.sweep.folder import descendants
from rcsweep.sweep.runner import ray_session


def listening(pids):
    """[(pid, ip, port)] of the TCP sockets in LISTEN state owned by pids (from /proc)."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes[link[8:-1]] = pid
        except OSError:
            continue
    out = []
    for name, fam in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
            out.append((inodes[f[9]], socket.inet_ntop(fam, raw), int(hexport, 16)))
    return out


with ray_session(None) as (nodes, owned):
    @ray.remote(num_cpus=1)
    class Actor:  # a worker process, like a trial's actor
        def ping(self):
            return os.getpid()
    actor = Actor.remote()
    ray.get(actor.ping.remote())
    print(json.dumps({"owned": owned, "node_ip": nodes[0]["NodeManagerAddress"],
                      "listening": listening([os.getpid(), *descendants(os.getpid())])}))
'''


def test_local_ray_listens_on_loopback_only():
    """A local Ray started by rcsweep (no --address) has every socket of its processes (GCS, raylet,
    workers, actors) on 127.0.0.1: nothing listens on other interfaces."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.run([sys.executable, "-c", LOOPBACK_SCRIPT], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["owned"] and out["node_ip"] == "127.0.0.1"
    assert len(out["listening"]) >= 3  # at least GCS, raylet and a worker
    elsewhere = [s for s in out["listening"] if s[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not elsewhere, elsewhere


@pytest.mark.slow
def test_trial_timeout_fails_the_slow_trial_and_the_others_finish(ray_local, tmp_path):  # noqa: F811
    """trial_timeout_s: a trial still running past it fails with the reason; a quick one finishes;
    the timed-out trial's shared pretraining is left unfinished, not recorded as trained."""
    from rcsweep.sweep.runner import run_sweep
    from rcsweep.sweep.store import count_trainings

    sweep = {"name": "timeout", "fixed": {**FIXED, "pretrain_epochs": 0},
             "space": {"finetune": {"choice": ["none", "clean"]}},
             "references": [{"pretrain_epochs": 5000, "lr": 0.02}],  # minutes: far longer than the timeout
             "search": "grid", "max_concurrent": 2, "max_failures": 0, "trial_timeout_s": 60}
    out = run_sweep(sweep, storage=tmp_path)
    df = load_results(out.folder).set_index("trial_id")
    assert out.exit_code == 1 and (out.planned, out.finished, out.failed) == (3, 2, 1)
    slow = df[df["pretrain_epochs"] == 5000].iloc[0]
    assert slow["status"] == "failed" and slow["error"].startswith("TrialTimeout: trial_timeout_s: still at stage pretrain")
    assert set(df[df["pretrain_epochs"] == 0]["status"]) == {"finished"}
    trained = count_trainings(out.folder)
    assert sorted(trained.values()) == [0, 1] or sorted(trained.values()) == [1]


def test_a_local_ray_is_always_a_new_one(monkeypatch):
    """Without --address, rcsweep starts its own Ray: ``ray.init`` gets ``address="local"``, so a
    cluster that ``ray start`` left on this machine (found through /tmp/ray/ray_current_cluster) is
    never joined; a new user's sweep once joined another job's cluster and died with it."""
    import ray

    from rcsweep.sweep import runner

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    runner._init_loopback_ray()
    assert calls and calls[0]["address"] == "local"
