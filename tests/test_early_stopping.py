"""The sweep file's early_stopping section (issue 16): defaults, what is allowed, and that it survives
the round trip through sweep.yaml (what resume reads). Bad input: tests/test_sweep_cli.py's BAD_FILES."""
import pytest

from rcsweep.errors import ConfigError
from rcsweep.sweepfile import parse_sweep

BASE = {"fixed": {"dataset": "digits", "finetune": "adversarial", "finetune_epochs": 3},
        "space": {"compression": {"choice": ["none", "quant"]}}}


def test_off_by_default_and_defaults_when_on():
    assert parse_sweep(BASE, "s").early_stopping is None
    es = parse_sweep({**BASE, "early_stopping": {"rungs": [0, 1, 3]}}, "s").early_stopping
    assert (es.rungs, es.eta, es.margin_se, es.screen_size, es.screen_steps, es.stop) == ((0, 1, 3), 3, 2.0, 512, 10, True)


def test_round_trip_through_the_sweep_folder():
    spec = parse_sweep({**BASE, "early_stopping": {"rungs": [0, 2], "eta": 2, "screen_size": 64}}, "s")
    again = parse_sweep(spec.to_dict(), "s")
    assert again.early_stopping == spec.early_stopping and again.early_stopping.rungs == (0, 2)


def test_a_grid_may_record_screening_without_stopping():
    spec = parse_sweep({**BASE, "search": "grid", "early_stopping": {"rungs": [0, 1], "stop": False}}, "s")
    assert spec.early_stopping.stop is False
    with pytest.raises(ConfigError, match="grid search measures every point"):
        parse_sweep({**BASE, "search": "grid", "early_stopping": {"rungs": [0, 1]}}, "s")


def test_rungs_are_checked_against_the_largest_searched_finetune_epochs():
    sweep = {**BASE, "fixed": {"dataset": "digits", "finetune": "clean"},
             "space": {"finetune_epochs": {"int": [1, 9]}}, "early_stopping": {"rungs": [0, 1, 9]}}
    assert parse_sweep(sweep, "s").early_stopping.rungs == (0, 1, 9)
    with pytest.raises(ConfigError, match="rung 10 is beyond"):
        parse_sweep({**sweep, "early_stopping": {"rungs": [10]}}, "s")
