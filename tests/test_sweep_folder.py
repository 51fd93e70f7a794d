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


def _status_text(folder, rows, objectives) -> str:
    from analysis_helpers import write_sweep
    from rcsweep.sweep.folder import write_spec
    from rcsweep.sweep.summary import format_status, sweep_status
    from rcsweep.sweepfile import load_sweep

    spec = load_sweep({"name": "s", "fixed": {"dataset": "digits"}, "space": {"sparsity": {"choice": [0.5, 0.9]}},
                       "num_samples": 12, "objectives": objectives})
    folder.mkdir()
    write_spec(folder, spec, {})
    write_sweep(folder, rows)
    return format_status(sweep_status(folder))


def test_status_shows_the_front_size_and_its_hypervolume(tmp_path):
    import math

    from analysis_helpers import STANDARD_ROWS

    text = _status_text(tmp_path / "a", STANDARD_ROWS, {"robust_acc": "max", "model_bits": "min"})
    # usable: t00-t05 (t06 suspect, t07 failed, t08 running); front t01, t03, t05 as in rcsweep pareto
    line = next(s for s in text.splitlines() if s.startswith("Pareto front:"))
    assert line.startswith(f"Pareto front: 3 of 6 usable trials, hypervolume "
                           f"{0.5 + 0.4 * (math.log10(20) - 1):.4f} (robust_acc max, model_bits min; normalisation: ")
    assert "dense_model_bits" in line
    front = text.split(line)[1].splitlines()[2:5]  # the front's table stays, best robust accuracy first
    assert [r.split()[0] for r in front] == ["t01", "t03", "t05"]

    text = _status_text(tmp_path / "b", STANDARD_ROWS, {"robust_acc": "max", "model_bits": "min", "flops_route": "min"})
    assert "Pareto front: 6 of 6 usable trials, hypervolume " in text  # t00, t02, t04 cost least: on the front
    assert "flops_route: 1 - v / v_ref" in text

    no_ft = [r for r in STANDARD_ROWS if r[2].get("finetune", "none") == "none"]
    text = _status_text(tmp_path / "c", no_ft, {"robust_acc": "max", "flops_finetune": "min"})
    assert "usable trials (robust_acc max, flops_finetune min); no hypervolume: objective 'flops_finetune'" in text


def test_status_says_when_the_search_ended_early(tmp_path, capsys):
    """A finite space whose every configuration ran (the searcher's search.json) ends the sweep
    before its budget: status says so next to the trial counts, and a stopped sweep is complete."""
    import json

    from analysis_helpers import STANDARD_ROWS
    from rcsweep.cli import main
    from rcsweep.sweep.folder import SEARCH_FILE

    done = [r for r in STANDARD_ROWS if r[1] != "running"]
    text = _status_text(tmp_path / "a", done, {"robust_acc": "max", "model_bits": "min"})
    assert "search ended early" not in text and "(stopped)" in text.splitlines()[0]  # 8 of 12 planned
    # a driver that stopped between trials, before its budget: status says how to go on
    assert f"the driver stopped before the sweep was complete: 'rcsweep resume {tmp_path / 'a'}'" in text
    (tmp_path / "a" / SEARCH_FILE).write_text(json.dumps({"exhausted": "8 distinct configurations, all run"}))
    assert main(["status", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(complete)")
    assert lines[1].startswith("trials: 7 finished, 0 running, 1 failed, of 12 planned")
    assert lines[2] == "search ended early: 8 distinct configurations, all run"
    assert "rcsweep resume" not in "\n".join(lines)  # complete: nothing to resume

    text = _status_text(tmp_path / "b", STANDARD_ROWS, {"robust_acc": "max", "model_bits": "min"})
    (tmp_path / "b" / SEARCH_FILE).write_text(json.dumps({"exhausted": "9 distinct configurations, all run"}))
    assert main(["status", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "(stopped)" in out.splitlines()[0]  # a trial still running: not complete
    assert "search ended early: 9 distinct configurations, all run" in out


def test_status_names_the_flagged_trials_up_to_five():
    from rcsweep.sweep.summary import _flag_text

    assert _flag_text("suspect", ["a1"]) == "1 suspect (a1)"
    assert _flag_text("infeasible", [f"t{i}" for i in range(7)]) == "7 infeasible (t0, t1, t2, t3, t4, ... 2 more)"


def test_progress_says_a_trial_done_before_the_resume_is_not_run_again(tmp_path, capsys):
    """After a resume Tune starts the trials it had not heard finish; the trainable only reports
    their record. The progress lines said 'start' as if they ran again (a new user's resume log)."""
    import json
    from types import SimpleNamespace

    from rcsweep.sweep.progress import SweepProgress

    (tmp_path / "trials" / "old").mkdir(parents=True)
    (tmp_path / "trials" / "old" / "record.json").write_text("{}")
    (tmp_path / "trials" / "cut").mkdir()
    (tmp_path / "trials" / "cut" / "early_stopped.json").write_text(json.dumps({"rung": 1, "reason": "dominated"}))
    progress = SweepProgress(tmp_path, [("robust_acc", "max")], total=3)

    def trial(tid, result=None):
        return SimpleNamespace(trial_id=tid, config={"trial": {"compression": "quant", "weight_bits": 4}},
                               last_result=result or {})

    for t in (trial("old", {"robust_acc": 0.5}), trial("cut"), trial("new", {"robust_acc": 0.25})):
        progress.on_trial_start(0, [], t)
        progress.on_trial_complete(0, [], t)
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == ["done    old  robust_acc=0.5 (before the resume)",
                     "stopped cut  at rung 1 (before the resume): dominated",
                     "start   new  sta quant w=4", "done    new  robust_acc=0.25"]
