"""The replay benchmark (benchmarks/replay_search.py, issue 15): the real searcher driven over the
grid's committed table issues distinct configurations of the table only, its hypervolume curve is
the analysis layer's, and a trained sweep is measured the same way."""
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

replay_search = pytest.importorskip("replay_search")


@pytest.fixture(scope="module")
def table():
    return replay_search.Table.of(replay_search.load_table())


def _target(table):
    from analysis.pareto import hypervolume_curve, reference_values
    from rcsweep.results import split_usable

    objs = replay_search.objectives()
    usable, _ = split_usable(table.df[table.df["status"] == "finished"], [o.column for o in objs])
    refs = reference_values(usable, objs)
    return float(hypervolume_curve(table.df, objs, refs)["hypervolume"].iloc[-1]), refs


@pytest.mark.parametrize("search", [{"sampler": "random"}, {"sampler": "tpe", "max_repeats": 2}, {"sampler": "tpe_front"}])
def test_a_replay_issues_distinct_configurations_of_the_table(table, tmp_path, search):
    target, refs = _target(table)
    curve, run = replay_search.replay_curve("v", search, 0, table, tmp_path, budget=14, refs=refs)
    assert run["trials_run"] == 14
    assert [c["distinct"] for c in curve] == list(range(1, 15))  # every trial a new configuration
    hv = [c["hypervolume"] for c in curve]
    assert hv == sorted(hv) and 0 < hv[-1] <= target + 1e-12  # never above the whole grid's


def test_the_whole_space_replayed_reaches_the_grid_and_then_ends(table, tmp_path):
    target, refs = _target(table)
    curve, run = replay_search.replay_curve("v", {"sampler": "random"}, 1, table, tmp_path, budget=60, refs=refs)
    assert run["trials_run"] == 56 and run["exhausted"] == "54 distinct configurations, all run"  # the space; + 2 references
    assert curve[-1]["hypervolume"] == pytest.approx(target)
    assert replay_search.trials_to(__import__("pandas").DataFrame(curve), target) <= 56


def test_a_trained_sweep_is_measured_as_the_replays(table, tmp_path):
    target, refs = _target(table)
    sweep = tmp_path / "in" / "grid_s0"
    sweep.mkdir(parents=True)
    shutil.copy(replay_search.TABLE, sweep / "results.csv")
    rows = replay_search.real_sweeps([sweep], table, tmp_path / "out", target, refs)
    assert rows[-1]["hypervolume"] == pytest.approx(target) and rows[-1]["distinct"] == 56
    assert "| grid_s0 | 56 | 56 |" in (tmp_path / "out" / "real.md").read_text()
    assert (tmp_path / "out" / "sweeps" / "grid_s0.csv").is_file()
