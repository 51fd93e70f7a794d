"""``rcsweep trial`` and ``rcsweep eval``: outputs, overrides, and one-line errors with exit code 2."""
import json
import subprocess
import sys

import pytest
import yaml

from rcsweep.cli import main

SWEEP = {
    "fixed": {"dataset": "digits", "batch_size": 32, "pretrain_epochs": 2, "test_size": 40, "eval_steps": 3,
              "eval_restarts": 1, "eps_eval": 0.1, "train_size": 300},
    "space": {"pretrain": {"choice": ["standard", "adversarial"]},
              "finetune": {"choice": ["none", "adversarial"]},
              "eps_finetune": {"uniform": [0.05, 0.2]}},
}


@pytest.fixture
def sweep_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(SWEEP))
    return p


def test_trial_writes_outputs_and_applies_overrides(sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    sweep_file.write_text(yaml.safe_dump({**SWEEP, "energy": {"cpu_watts": 20, "grid_gco2_per_kwh": 100}}))
    rc = main(["trial", str(sweep_file), "--set", "finetune=adversarial", "eps_finetune=8/255",
               "eps_curve=[0.05, 0.1]", "--out", str(out)])
    assert rc == 0
    rec = json.loads((out / "record.json").read_text())
    # energy per stage with its source: the sweep file's wattage where no RAPL counter is readable
    m, stages = rec["metrics"], ("pretrain", "compress", "finetune", "evaluate")
    assert all(m[f"energy_kwh_{s}"] > 0 for s in ("pretrain", "finetune", "evaluate"))
    assert m["co2_g"] == pytest.approx(100 * sum(m[f"energy_kwh_{s}"] for s in stages))
    from rcsweep.energy import rapl_readable

    if not rapl_readable():
        assert m["energy_source"] == "estimate: cpu_seconds x 20 W"
    assert f"({m['energy_source']}), CO2" in capsys.readouterr().out
    p = rec["params"]
    assert p["finetune"] == "adversarial" and p["eps_finetune"] == pytest.approx(8 / 255)
    assert p["pretrain"] == "standard"  # searched, not set: its default (TrialConfig's)
    assert p["weight_bits"] is None and p["sparsity"] is None  # do not apply
    assert set(rec["metrics"]["robust_acc_curve"]) == {"0.05", "0.1"}
    assert (out / "model.pt").is_file() and (out / "model.json").is_file()
    # evaluate the saved model
    rc = main(["eval", str(out), "--eps", "0.05", "2/255", "--test-size", "30", "--steps", "3", "--out",
               str(tmp_path / "e.json")])
    assert rc == 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["n_test"] == 30 and e["eps_eval"] == 0.05
    assert "APGD-DLR" in e["attack"]
    assert main(["eval", str(out), "--test-size", "30", "--steps", "3", "--targets", "3", "--out",
                 str(tmp_path / "t.json")]) == 0
    assert "APGD-T 3 steps x 3 targets" in json.loads((tmp_path / "t.json").read_text())["attack"]
    # with the model's own settings, eval gives the trial's numbers, every time: seeded as the trial
    # was (a new user's five evals of one model gave five robust accuracies, none the sweep's)
    for name in ("a.json", "b.json"):
        assert main(["eval", str(out), "--out", str(tmp_path / name)]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["robust_acc"] == b["robust_acc"] == pytest.approx(m["robust_acc"])
    assert a["clean_acc"] == pytest.approx(m["clean_acc"])


def test_space_parameters_that_do_not_apply_are_dropped(sweep_file, tmp_path):
    out = tmp_path / "o"
    assert main(["trial", str(sweep_file), "--set", "finetune=clean", "--out", str(out)]) == 0
    assert json.loads((out / "record.json").read_text())["params"]["eps_finetune"] is None


def _cli(*args):
    r = subprocess.run([sys.executable, "-m", "rcsweep.cli", *args], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stderr.strip()


@pytest.mark.parametrize("sets, needle", [
    (["dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["model=vgg99"], "unknown model 'vgg99'"),
    (["sparsty=0.5"], "sparsty: unknown parameter"),
    (["eps_eval=-0.1"], "eps_eval"),
    (["eps_eval=2"], "eps_eval"),
    (["compression=prune", "weight_bits=4"], "weight_bits: only applies"),
    (["seed"], "KEY=VALUE"),
])
def test_trial_bad_input_one_line_exit_2(sweep_file, tmp_path, sets, needle):
    rc, err = _cli("trial", str(sweep_file), "--set", *sets, "--out", str(tmp_path / "never"))
    assert rc == 2, err
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_non_empty_out_is_refused(sweep_file, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    rc, err = _cli("trial", str(sweep_file), "--out", str(tmp_path / "full"))
    assert rc == 2 and "not empty" in err
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"


def test_missing_data_offline(sweep_file, tmp_path):
    rc, err = _cli("trial", str(sweep_file), "--set", "dataset=cifar10", "--data-dir", str(tmp_path / "none"),
                   "--out", str(tmp_path / "o"))
    assert rc == 2 and "cifar10" in err and "not found" in err and len(err.splitlines()) == 1


def test_eval_bad_input(tmp_path):
    rc, err = _cli("eval", str(tmp_path / "nomodel"))
    assert rc == 2 and "no model" in err
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pt").write_bytes(b"garbage")
    (tmp_path / "m" / "model.json").write_text('{"format": "rcsweep-model", "config": {}, "sha256": "00"}')
    rc, err = _cli("eval", str(tmp_path / "m"))
    assert rc == 2 and "corrupted" in err and len(err.splitlines()) == 1


def test_eval_unknown_attack_and_bad_eps(digits_trials):
    folder = str(digits_trials["standard"])
    rc, err = _cli("eval", folder, "--attack", "deepfool")
    assert rc == 2 and "unknown attack 'deepfool'" in err
    rc, err = _cli("eval", folder, "--eps", "1.5")
    assert rc == 2 and "--eps: epsilon 1.5 is outside [0, 1]" in err  # the flag, not the config's eps_eval
    rc, err = _cli("eval", folder, "--dataset", "cifar10")
    assert rc == 2 and "shape" in err
    rc, err = _cli("eval", folder, "--targets", "-1")
    assert rc == 2 and "--targets must be >= 0, got -1" in err


def test_missing_and_malformed_sweep_files(tmp_path):
    rc, err = _cli("trial", str(tmp_path / "nope.yaml"))
    assert rc == 2 and "does not exist" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("fixed: {dataset: digits\n")
    rc, err = _cli("trial", str(bad))
    assert rc == 2 and "not valid YAML" in err
