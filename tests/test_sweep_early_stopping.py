"""Early stopping on a real local Ray (issue 16): a clearly dominated trial is stopped at rung 0,
recorded as early_stopped with its screening, told to the study as pruned, kept off the front and
counted by status; the others finish with every rung screened. A SIGKILLed driver's sweep resumes
with the scheduler's state intact and no stopped trial run again."""
import json
import signal

from conftest_ray import ray_local  # noqa: F401  (session fixture)
from test_sweep_run import FIXED, stage_logs, start_driver

from rcsweep import load_results
from rcsweep.cli import main

# references: 3 pretraining epochs, dense, fine-tuned at two learning rates (clean accuracy ~0.87
# on 100 val images); searched: 1 epoch (~0.31: dominated by both references beyond the margin)
# and 4 epochs (~0.96: on the front). All four share a rung group (dense, clean fine-tuning, 2
# epochs: rcsweep.rungs.group_key, "none/2"); rung 0 has 3 points once the third trial reaches it (eta + 1 =
# 3): it decides.
ES = {"name": "es", "fixed": {**{k: v for k, v in FIXED.items() if k != "pretrain_epochs"}, "val_size": 100,
                              "finetune": "clean", "finetune_epochs": 2, "finetune_lr": 0.02},
      "space": {"pretrain_epochs": {"choice": [1, 4]}},
      "references": [{"pretrain_epochs": 3}, {"pretrain_epochs": 3, "finetune_lr": 0.01}],
      "objectives": {"clean_acc": "max", "model_bits": "min"},
      "early_stopping": {"rungs": [0, 1], "eta": 2, "screen_size": 100, "screen_steps": 2},
      "num_samples": 4, "max_concurrent": 2, "max_failures": 0}


def test_a_dominated_trial_is_stopped_at_rung_0_and_the_others_finish(ray_local, tmp_path, capsys):  # noqa: F811
    from rcsweep.sweep.runner import run_sweep
    from rcsweep.sweep.scheduler import STATE_FILE
    from rcsweep.sweep.search import open_study
    from rcsweep.sweep.summary import pareto_front
    from rcsweep.sweepfile import load_sweep

    out = run_sweep(ES, storage=tmp_path, quiet=True)
    df = load_results(out.folder).set_index("trial_id")
    assert out.exit_code == 0 and (out.finished, out.early_stopped, out.failed) == (3, 1, 0)
    stopped = df[df["status"] == "early_stopped"]
    assert len(stopped) == 1 and stopped["pretrain_epochs"].iloc[0] == 1
    s = stopped.iloc[0]
    tid = stopped.index[0]
    assert s["screen_rung"] == 0 and s["screen_clean_acc"] < 0.5 and s["flops_screen"] > 0
    assert "below the top" in s["early_stopped_reason"] and [h["rung"] for h in s["screen_history"]] == [0]
    assert s["flops_finetune"] == 0 and s["flops_pretrain"] > 0  # what it cost: no fine-tuning at all
    assert s["model_bits"] == df[df["status"] == "finished"]["model_bits"].max()  # its size, known at rung 0
    assert s["screen_history"][0]["values"]["model_bits"] == s["model_bits"]  # what the decision compared
    trial = out.folder / "trials" / tid
    assert not (trial / "record.json").exists() and not (trial / "checkpoints").exists()
    assert json.loads((trial / "early_stopped.json").read_text())["rung"] == 0
    assert [e["stage"] for e in stage_logs(out.folder)[tid]] == ["pretrain", "compressed"]  # never fine-tuned

    done = df[df["status"] == "finished"]
    for _, r in done.iterrows():  # every rung screened and recorded, the evaluation's cost counted
        assert [h["rung"] for h in r["screen_history"]] == [0, 1] and r["screen_rung"] == 1
        assert r["flops_evaluate"] > 0 and r["flops_screen"] > 0
    assert sorted(done["pretrain_epochs"]) == [3, 3, 4]

    state = json.loads((out.folder / STATE_FILE).read_text())
    assert {k: len(v) for k, v in state.items()} == {"none/2|0": 4, "none/2|1": 3}
    assert [p["decision"]["stop"] for p in state["none/2|0"] if p["trial_id"] == tid] == [True]

    spec = load_sweep(ES)
    assert tid not in set(pareto_front(df.reset_index(), spec.objectives)["trial_id"]) and tid not in out.pareto
    study = open_study(out.folder, spec)
    mine = [t for t in study.trials if t.user_attrs.get("tune_trial") == tid]
    assert len(mine) == 1 and mine[0].state.name == "PRUNED" and mine[0].user_attrs["early_stopped"]
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3 + ["PRUNED"]
    assert main(["status", str(out.folder)]) == 0
    text = capsys.readouterr().out
    assert "(complete)" in text and "early stopping: 1 stopped early (rung 0: 1): 2 fine-tuning epochs" in text
    assert "trials: 3 finished, 1 stopped early, 0 running, 0 failed, of 4 planned" in text
    assert next(line for line in text.splitlines() if tid in line and "early_stopped" in line).rstrip().endswith(
        "stopped at rung 0")
    # the replay of the sweep with its own settings decides as the live scheduler did
    from rcsweep.commands.replay import simulate
    from rcsweep.early_stopping import parse_early_stopping

    es = parse_early_stopping({**ES["early_stopping"], "stop": True}, search="replay", objectives=spec.objectives,
                              fixed=spec.fixed, space=spec.space)
    replayed = simulate(load_results(out.folder), spec.objectives, es, 10)
    assert {t: rung for t, (rung, _) in replayed.items()} == {tid: 0}
    assert "recorded sweep" not in replayed[tid][1]  # stopped by the replayed decision, not copied from the record
    # rcsweep replay says that the trial stopped in the sweep never finished: the front is of those that did
    assert main(["replay", str(out.folder)]) == 0
    assert "note: 1 trial(s) stopped in the recorded sweep never finished" in capsys.readouterr().out


def test_killed_driver_resumes_with_the_scheduler_state_and_no_stopped_trial_rerun(ray_local, tmp_path, monkeypatch):  # noqa: F811
    from rcsweep.sweep.runner import resume_sweep
    from rcsweep.sweep.scheduler import STATE_FILE, STOPPED_FILE

    # the driver is killed once Tune has saved its state after the stop (every 0.5 s here): the
    # other searched trial pretrains 6 epochs, so in either order it still runs then; random
    # search: the default's startup would hold that trial back until the stop
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0.5")
    killed = {**ES, "name": "es_killed", "search": "random", "space": {"pretrain_epochs": {"choice": [1, 6]}}}

    def saved_after_the_stop(rows) -> bool:
        stops = list((tmp_path / "store" / "es_killed" / "trials").glob(f"*/{STOPPED_FILE}"))
        states = list((tmp_path / "store" / "es_killed" / "tune").glob("experiment_state-*.json"))
        return (rows["status"] == "early_stopped").any() and bool(stops) and any(
            s.stat().st_mtime > max(p.stat().st_mtime for p in stops) for s in states)

    driver, folder = start_driver(killed, tmp_path, ray_local, saved_after_the_stop)
    assert driver.poll() is None, "the sweep ended before it could be interrupted"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    df = load_results(folder)
    tid = df.loc[df["status"] == "early_stopped", "trial_id"].iloc[0]
    log_before = stage_logs(folder)[tid]
    state_before = json.loads((folder / STATE_FILE).read_text())

    outcome = resume_sweep(folder, quiet=True)
    df = load_results(folder).set_index("trial_id")
    assert outcome.exit_code == 0 and (outcome.finished, outcome.early_stopped) == (3, 1)
    assert df.loc[tid, "status"] == "early_stopped" and df.loc[tid, "pretrain_epochs"] == 1
    assert stage_logs(folder)[tid] == log_before  # the stopped trial never ran again
    assert not (folder / "trials" / tid / "record.json").exists()
    state = json.loads((folder / STATE_FILE).read_text())
    for key, points in state_before.items():  # the scheduler's state came back: nothing lost or decided twice
        assert state[key][:len(points)] == points
    assert {k: len(v) for k, v in state.items()} == {"none/2|0": 4, "none/2|1": 3}
    for key, points in state.items():
        assert len({p["trial_id"] for p in points}) == len(points)


def test_a_point_reported_again_gets_the_decision_recorded_for_it(tmp_path):
    """A trial resumed from its rung's checkpoint reports that rung again: the scheduler (a new one,
    as after a killed driver) reads its state file and answers with the recorded decision."""
    from rcsweep.sweep.scheduler import STATE_FILE, RungScheduler
    from rcsweep.sweepfile import load_sweep

    spec = load_sweep(ES)

    def report(acc, bits):
        return {"rung": 0, "rung_group": "none/2", "rung_classes": 10, "rung_n": 100, "screen_clean_acc": acc,
                "rung_value.clean_acc": acc, "rung_value.model_bits": bits}

    first = RungScheduler(spec)
    for tid, acc, bits in (("a", 0.9, 1e5), ("b", 0.88, 2e4), ("c", 0.3, 1e5)):
        first.judge(tmp_path, tid, report(acc, bits))
    again = RungScheduler(spec)  # state from the file only
    assert again.judge(tmp_path, "c", report(0.95, 1.0)).stop  # the recorded decision, not a new one
    assert not again.judge(tmp_path, "a", report(0.0, 1e9)).stop
    assert [p["trial_id"] for p in json.loads((tmp_path / STATE_FILE).read_text())["none/2|0"]] == ["a", "b", "c"]
    assert again.judge(tmp_path, "r", report(0.2, 1e6), reference=True).reason == "a reference: never stopped"


def test_a_flagged_trial_and_a_set_aside_one_take_no_part_in_later_decisions(tmp_path):
    """A trial whose final evaluation flags it suspect (a new user's gradient-masked quantized model
    screened best and stopped a front trial) stops no trial after it ends; a trial started after
    Tune's last state save by a killed driver, which the resume sets aside, leaves the rungs when
    the resumed scheduler first reads its state (a new user's rung decided on such a point)."""
    from types import SimpleNamespace

    from rcsweep.sweep.scheduler import STATE_FILE, RungScheduler
    from rcsweep.sweepfile import load_sweep

    spec = load_sweep(ES)

    def report(acc, bits):
        return {"rung": 0, "rung_group": "none/2", "rung_classes": 10, "rung_n": 100, "screen_clean_acc": acc,
                "rung_value.clean_acc": acc, "rung_value.model_bits": bits}

    def trial(tid):
        return SimpleNamespace(trial_id=tid, config={"_sweep": {"dir": str(tmp_path)}})

    first = RungScheduler(spec)
    for tid, acc in (("a", 0.6), ("b", 0.6), ("s", 0.99)):
        first.judge(tmp_path, tid, report(acc, 1e5))
    assert first.judge(tmp_path, "c", report(0.3, 1e5)).stop  # s and the others dominate it
    first.on_trial_complete(None, trial("s"), {"flags": "suspect;weak_eval"})
    first.on_trial_complete(None, trial("a"), {"flags": "weak_eval"})  # on the front all the same: stays
    state = json.loads((tmp_path / STATE_FILE).read_text())["none/2|0"]
    assert [p["trial_id"] for p in state if p.get("withdrawn")] == ["s"]
    assert "suspect" in state[2]["withdrawn"]
    # d as good as a and b: without s's point, on the first front
    assert not first.judge(tmp_path, "d", report(0.6, 1e5)).stop

    controller = SimpleNamespace(get_trials=lambda: [trial(t) for t in ("a", "b", "s", "c", "e")])
    again = RungScheduler(spec)  # resumed: "d" was set aside (Tune never saved it)
    again.on_trial_result(controller, trial("e"), report(0.6, 1e5))
    ids = [p["trial_id"] for p in json.loads((tmp_path / STATE_FILE).read_text())["none/2|0"]]
    assert ids == ["a", "b", "s", "c", "e"]


def test_a_pruned_configuration_is_known_as_stopped_and_never_run_again():
    """What a resumed searcher reads back from the journal: a pruned trial's configuration is
    'early_stopped' (a repeated suggestion of it is told pruned, never run)."""
    import optuna

    from rcsweep.sweep.study import known_from_study, tell_pruned

    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    trial.set_user_attr("config_key", "k1")
    trial.set_user_attr("tune_trial", "t1")
    tell_pruned(study, trial.number)
    frozen = study.trials[0]
    assert frozen.state.name == "PRUNED" and frozen.user_attrs["early_stopped"] and frozen.values is None
    known, results, _ = known_from_study(study.trials, {"t1": 0})
    assert known == {"k1": "early_stopped"} and results == {}


def test_status_says_why_nothing_was_stopped(tmp_path):
    """A sweep with early stopping that stopped nothing says so, and how many rung looks came too
    early to decide (a new user's 10-trial sweep stopped nothing and status did not mention it)."""
    from rcsweep.sweep.scheduler import STATE_FILE
    from rcsweep.sweep.summary import Status, _nothing_stopped
    from rcsweep.sweepfile import load_sweep

    waits = {"stop": False, "reason": "rung has 2 of the 3 points it needs to decide"}
    (tmp_path / STATE_FILE).write_text(json.dumps({
        "none/2|0": [{"trial_id": "a", "decision": waits}, {"trial_id": "b", "decision": waits},
                     {"trial_id": "c", "decision": {"stop": False, "reason": "on the first front"}}],
        "none/2|1": [{"trial_id": "a", "decision": waits}]}))
    line = _nothing_stopped(Status(tmp_path, load_sweep(ES), {"finished": 3}, "stopped", None))
    assert line.startswith("none stopped; 4 rung looks in 2 rungs, 3 of them too early to decide")
    assert "eta + 1 = 3 points" in line


def test_status_of_a_sweep_that_only_records_its_screening(tmp_path):
    """stop: false screens without a scheduler (no state file): status counts the recorded
    screenings (a new user's read '0 rung looks in 0 rungs' after 43 had been recorded)."""
    import pandas as pd

    from rcsweep.sweep.summary import Status, format_status
    from rcsweep.sweepfile import load_sweep

    spec = load_sweep({**ES, "early_stopping": {**ES["early_stopping"], "stop": False}})
    table = pd.DataFrame({"trial_id": ["a", "b"], "status": ["finished", "finished"],
                          "screen_history": [[{"rung": 0}, {"rung": 1}], [{"rung": 0}]]})
    text = format_status(Status(tmp_path, spec, {"finished": 2}, "stopped", table))
    assert (f"early stopping: stop: false: 3 rung screenings recorded (rungs [0, 1]), none stopped; "
            f"'rcsweep replay {tmp_path}'") in text
