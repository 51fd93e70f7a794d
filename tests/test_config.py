import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcsweep.config import FIELD_NAMES, TrialConfig, applicable, parse_number
from rcsweep.errors import ConfigError, UserError


def test_defaults_fill_only_applicable_parameters():
    c = TrialConfig()
    assert c.model == "digits_cnn" and c.sparsity is None and c.weight_bits is None and c.eps_finetune is None
    c = TrialConfig(compression="prune_quant", finetune="adversarial", pretrain="adversarial", eps_eval=0.2)
    assert (c.sparsity, c.weight_bits, c.act_bits, c.quant_mode) == (0.5, 8, 8, "ptq")
    assert c.eps_finetune == 0.2 and c.eps_pretrain == 0.2 and c.finetune_epochs == 3


def test_flat_round_trip_is_exact():
    c = TrialConfig(compression="quant", weight_bits=4, eps_curve=(0.05, "8/255"), finetune="clean")
    flat = c.to_flat()
    assert set(flat) == set(FIELD_NAMES)
    assert TrialConfig.from_flat(flat) == c
    assert flat["eps_curve"] == [0.05, 8 / 255]


@pytest.mark.parametrize("kwargs, field", [
    ({"compression": "prunne"}, "compression"),
    ({"eps_eval": -0.1}, "eps_eval"),
    ({"eps_eval": 1.5}, "eps_eval"),
    ({"sparsity": 0.5}, "sparsity"),  # no pruning
    ({"compression": "prune", "weight_bits": 4}, "weight_bits"),
    ({"compression": "prune", "sparsity": 1.0}, "sparsity"),
    ({"compression": "quant", "weight_bits": 1}, "weight_bits"),
    ({"compression": "quant", "act_bits": 17}, "act_bits"),
    ({"eps_finetune": 0.1, "finetune": "clean"}, "eps_finetune"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": "x"}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"lr": "fast"}, "lr"),
    ({"eps_curve": [0.1, 2]}, "eps_curve"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as e:
        TrialConfig(**kwargs)
    assert e.value.field == field and str(e.value).startswith(field + ":")
    assert "\n" not in str(e.value)


def test_unknown_parameter_suggests_the_right_name():
    with pytest.raises(ConfigError, match="did you mean 'sparsity'"):
        TrialConfig.from_flat({"sparsty": 0.5})


def test_unknown_dataset_and_model_are_user_errors():
    with pytest.raises(UserError, match="unknown dataset 'mnist2'"):
        TrialConfig(dataset="mnist2")
    from rcsweep.models import build_model

    with pytest.raises(UserError, match="unknown model"):
        build_model("vgg99", "digits")


def test_l2_epsilon_may_exceed_one():
    assert TrialConfig(norm="l2", eps_eval=1.5).eps_eval == 1.5


def test_fractions_and_applicability():
    assert parse_number("8/255") == pytest.approx(8 / 255)
    with pytest.raises(ConfigError):
        parse_number("8/0")
    assert applicable("weight_bits", {"compression": "prune_quant"})
    assert not applicable("weight_bits", {"compression": "prune"})
    assert not applicable("eps_finetune", {"finetune": "clean"})


def test_replace_switches_methods_and_drops_dependent_defaults():
    c = TrialConfig(compression="quant", weight_bits=4)
    d = c.replace(compression="prune")
    assert d.weight_bits is None and d.sparsity == 0.5


def test_committed_trial_parameters_round_trip_as_before():
    """Rows of committed results.csv files and hand-written configurations give the flat dicts
    (and the column order) that the configuration gave before compressors declared their own
    parameters (tests/data/config_round_trip.json, written by that code)."""
    golden = json.loads((Path(__file__).parent / "data" / "config_round_trip.json").read_text())
    added = {"precision": "fp32"}  # fields added since, with the default every earlier row means
    assert [f for f in FIELD_NAMES if f not in added] == golden["field_names"]
    for row in golden["rows"]:
        flat = TrialConfig.from_flat(row["params"]).to_flat()
        assert {k: flat.pop(k) for k in added} == added, row["source"]
        assert flat == row["flat"], row["source"]


def test_the_configuration_and_sweep_schema_import_no_torch():
    """``rcsweep validate`` reads sweep files without torch: the configuration takes the plug-ins'
    parameters from torch-free modules (rcsweep.compress_params, the objectives' classes)."""
    code = ("import sys, rcsweep.config, rcsweep.sweepfile, rcsweep.compress_params; "
            "sys.exit('torch' in sys.modules)")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == 0
