"""rcsweep replay (issue 16, item 6) and a sweep's compute (item 7) on a synthetic recorded sweep:
no Ray, no training. Rows are written as a sweep would write them (results.csv, sweep.yaml)."""
import pytest

from rcsweep.cli import main
from rcsweep.compute import sweep_compute
from rcsweep.results import load_results, record_to_row, upsert_rows
from rcsweep.sweep.folder import write_spec
from rcsweep.sweepfile import parse_sweep

SWEEP = {"fixed": {"dataset": "digits", "finetune": "clean", "finetune_epochs": 4},
         "space": {"pretrain_epochs": {"choice": [1, 2, 3, 4, 5]}},
         "objectives": {"clean_acc": "max", "model_bits": "min"},
         "early_stopping": {"rungs": [0, 2], "eta": 2, "stop": False}}


def _row(tid, epochs, rung0, rung2, final, bits=1e5):
    history = [{"rung": 0, "clean_acc": rung0, "robust_acc": 0.0, "n": 500, "flops": 10.0, "seconds": 1.0},
               {"rung": 2, "clean_acc": rung2, "robust_acc": 0.0, "n": 500, "flops": 10.0, "seconds": 1.0}]
    metrics = {"clean_acc": final, "robust_acc": 0.1, "model_bits": bits, "flops_pretrain": 1000.0 * epochs,
               "flops_finetune": 400.0, "flops_evaluate": 50.0, "flops_screen": 20.0, "time_pretrain_s": 10.0,
               "time_finetune_s": 4.0, "time_evaluate_s": 2.0, "time_screen_s": 2.0, "screen_history": history,
               "screen_rung": 2}
    params = {"dataset": "digits", "finetune": "clean", "finetune_epochs": 4, "pretrain_epochs": epochs,
              "compression": "none", "pretrain": "standard"}
    return record_to_row(tid, "finished", record={"params": params, "metrics": metrics})


@pytest.fixture
def recorded(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    write_spec(folder, parse_sweep(SWEEP, "rec"), {})
    # t4 is poor at rung 0 (0.3 against 0.8-0.9: beyond the margin on 500 images) and stays poor
    upsert_rows(folder, [_row("t1", 1, 0.85, 0.9, 0.92), _row("t2", 2, 0.8, 0.9, 0.91, bits=5e4),
                         _row("t3", 3, 0.9, 0.95, 0.97, bits=2e5), _row("t4", 4, 0.3, 0.4, 0.5),
                         _row("t5", 5, 0.3, 0.35, 0.45, bits=2e6)])
    return folder


def test_sweep_compute_counts_a_shared_pretraining_once(recorded):
    table = load_results(recorded)
    c = sweep_compute(table)
    assert c["pretrainings"] == 5 and c["flops_pretrain"] == 1000.0 * (1 + 2 + 3 + 4 + 5)
    assert c["flops"] == c["flops_pretrain"] + 5 * (400 + 50 + 20)
    shared = table.assign(pretrain_epochs=1, flops_pretrain=1000.0)  # one pretraining on every row: counted once
    assert sweep_compute(shared)["flops_pretrain"] == 1000.0 and sweep_compute(shared)["pretrainings"] == 1
    assert c["seconds"] == 5 * 10 + 5 * (4 + 2 + 2)


def test_replay_stops_the_dominated_trials_keeps_the_front_and_counts_what_is_saved(recorded, capsys):
    assert main(["replay", str(recorded)]) == 0
    out = capsys.readouterr().out
    # t4 arrives 4th at rung 0 with 3 better points before it; t5 is larger still: both stopped at rung 0
    assert "stopped: 2 of 5 trials" in out and "t4 at rung 0" in out and "t5 at rung 0" in out
    assert "front trials stopped: 0 of 3" in out and "hypervolume kept: " in out and "(100.0%)" in out
    # saved per stopped trial: its whole fine-tuning 400, its evaluation 50 and rung 2's screening 10
    assert "saved beyond the recorded stops 920 FLOPs" in out
    assert "'stop'" not in out and "images per rung)" in out  # the header: the decision's settings, the screening recorded
    # a stricter rule (eta 2 at rung 2 only, margin 0) on the same records
    assert main(["replay", str(recorded), "--early-stopping", "{rungs: [2], eta: 4, margin_se: 0}"]) == 0
    out = capsys.readouterr().out
    # t5's fine-tuning after rung 2 (200) and evaluation (50), and rung 0's screening, which this
    # setting does not run, of all five (5 x 10): a setting with fewer rungs pays less screening
    assert "stopped: 1 of 5 trials" in out and "t5 at rung 2" in out and "saved beyond the recorded stops 300 FLOPs" in out


def test_replay_refuses_rungs_that_were_not_recorded_and_a_bad_mapping(recorded, capsys):
    assert main(["replay", str(recorded), "--early-stopping", "{rungs: [1], eta: 2}"]) == 2
    assert capsys.readouterr().err.strip() == ("rcsweep: error: --early-stopping: rungs: 1 was not screened by the sweep "
                                               "(it screened rungs [0, 2]); replay rungs among those")
    assert main(["replay", str(recorded), "--early-stopping", "{rungs: [0], eta: 1}"]) == 2
    assert "early_stopping.eta: must be >= 2, got 1" in capsys.readouterr().err
    # the screening is the recorded one: a replay cannot change it (a new user's screen_size was
    # accepted and the header then showed the default, not what had been screened)
    assert main(["replay", str(recorded), "--early-stopping", "{rungs: [0], eta: 2, screen_size: 100}"]) == 2
    assert "screen_size cannot change in a replay" in capsys.readouterr().err


def test_a_replay_can_compare_trials_by_another_grouping(recorded):
    # rcsweep's grouping: all five in one rung (t4 and t5 stopped); one rung per trial: never eta + 1
    # points, so nothing is stopped (benchmarks/replay_grouping.py measures rules this way)
    from rcsweep.commands.replay import simulate
    from rcsweep.early_stopping import parse_early_stopping
    from rcsweep.sweep.folder import read_spec

    spec = read_spec(recorded)
    es = parse_early_stopping({"rungs": [0, 2], "eta": 2, "stop": True}, search="replay", objectives=spec.objectives,
                              fixed=spec.fixed, space=spec.space)
    table = load_results(recorded)
    assert set(simulate(table, spec.objectives, es, 10)) == {"t4", "t5"}
    assert simulate(table, spec.objectives, es, 10, group=lambda row, rung: row["trial_id"]) == {}


def test_a_trial_its_final_evaluation_flags_suspect_stops_no_later_trial(tmp_path):
    """A new user's replay: a gradient-masked quantized model (suspect after its final evaluation)
    screened best at rung 0 and stopped a trial of the final front. Once a trial ends flagged off
    the front, its points leave the rungs, as the scheduler withdraws them."""
    from rcsweep.commands.replay import simulate
    from rcsweep.early_stopping import parse_early_stopping

    folder = tmp_path / "rec"
    folder.mkdir()
    write_spec(folder, parse_sweep(SWEEP, "rec"), {})
    rows = [_row("t1", 1, 0.85, 0.9, 0.92), _row("t2", 2, 0.8, 0.9, 0.91, bits=5e4),
            _row("t3", 3, 0.99, 0.99, 0.97, bits=1e4), _row("t4", 4, 0.7, 0.8, 0.9, bits=2e4)]
    upsert_rows(folder, rows)
    table = load_results(folder)
    es = parse_early_stopping({"rungs": [0, 2], "eta": 2}, search="replay", objectives=[("clean_acc", "max"),
                              ("model_bits", "min")], fixed=SWEEP["fixed"], space=SWEEP["space"])
    objectives = [("clean_acc", "max"), ("model_bits", "min")]
    # t3 (0.99 at the smallest size) dominates t4 beyond the margin at rung 0: t4 stopped
    assert set(simulate(table, objectives, es, 10)) == {"t4"}
    flagged = table.assign(flags=["", "", "suspect", ""])
    assert simulate(flagged, objectives, es, 10) == {}
