"""The sweep file's resource options: a GPU share is a whole number of GPUs or 1/k of one;
``gpu_fallback`` and ``pretrain_resources`` are validated, and all three survive the round trip
through ``sweep.yaml`` (what ``rcsweep resume`` reads)."""
import pytest

from rcsweep.errors import ConfigError
from rcsweep.sweepfile import parse_sweep

BASE = {"space": {"seed": {"choice": [0, 1]}}}


@pytest.mark.parametrize("gpu", [0, 1, 2, 0.5, 0.25, "1/3", 0.33, 0.125, "1/7"])
def test_whole_gpus_and_shares_of_one_are_accepted(gpu):
    spec = parse_sweep({**BASE, "resources": {"cpu": 1, "gpu": gpu}}, "s")
    assert spec.resources["gpu"] == pytest.approx(eval(str(gpu)))


@pytest.mark.parametrize("gpu, needle", [(0.3, "0.3 does not divide one GPU"), (0.4, "0.4 does not divide one GPU"),
                                         (0.7, "0.7 does not divide one GPU"), (0.34, "0.34 does not divide"),
                                         (1.5, "fractions are only allowed below 1"), (-0.5, "must be >= 0")])
def test_other_fractions_are_refused_naming_the_rule(gpu, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        parse_sweep({**BASE, "resources": {"cpu": 1, "gpu": gpu}}, "s")
    assert e.value.field == "resources.gpu" and "\n" not in str(e.value)


def test_gpu_fallback_and_pretrain_resources_round_trip():
    spec = parse_sweep({**BASE, "resources": {"cpu": 1, "gpu": 0.5}, "gpu_fallback": "cpu",
                        "pretrain_resources": {"cpu": 4}}, "s")
    assert spec.gpu_fallback == "cpu" and spec.pretrain_resources == {"cpu": 4.0}
    again = parse_sweep(spec.to_dict(), "s")
    assert (again.gpu_fallback, again.pretrain_resources, again.resources) == ("cpu", {"cpu": 4.0},
                                                                               {"cpu": 1.0, "gpu": 0.5})
    default = parse_sweep(BASE, "s")
    assert default.gpu_fallback == "error" and default.pretrain_resources is None


@pytest.mark.parametrize("field, value, needle", [
    ("gpu_fallback", "silent", "gpu_fallback: must be one of error, cpu"),
    ("pretrain_resources", {"cpu": 0.5}, "pretrain_resources.cpu: must be at least a trial's resources.cpu (1)"),
    ("pretrain_resources", {"tpu": 2}, "pretrain_resources.tpu: unknown resource"),
    ("pretrain_resources", 4, "pretrain_resources: must be a mapping")])
def test_bad_fallback_and_pretrain_resources_are_refused(field, value, needle):
    with pytest.raises(ConfigError) as e:
        parse_sweep({**BASE, field: value}, "s")
    assert needle in str(e.value)
