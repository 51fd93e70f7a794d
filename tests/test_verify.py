"""``rcsweep verify``: a real tiny digits sweep (no Ray) re-attacked with torchattacks. A robust model
agrees with rcsweep's own evaluation on the same images; a sweep whose results.csv claims more
robustness than the model has is flagged suspect and listed in the report; bad input writes nothing."""
import shutil

import pandas as pd
import pytest

from analysis.commands import sweep_objectives
from analysis.common import load_sweep
from analysis.pareto import pareto_analysis
from rcsweep import TrialConfig, run_trial
from rcsweep.cli import main
from rcsweep.commands.verify import judge
from rcsweep.results import record_to_row, upsert_rows

pytest.importorskip("torchattacks")

# eps 0.1 and 3-step PGD training: a robust digits model (clean ~0.99, robust ~0.85) in a few seconds
BASE = dict(dataset="digits", batch_size=32, eps_eval=0.1, test_size=100, eval_steps=10, eval_restarts=1,
            attack_steps=3)
COLUMNS = ["trial_id", "dataset", "pretrain", "compression", "sparsity", "weight_bits", "act_bits", "finetune", "norm",
           "eps_eval", "n_test", "n_examples", "clean_acc_sweep", "clean_acc", "robust_acc_sweep", "robust_acc_rcsweep",
           "robust_acc_independent", "robust_acc_white_box", "attack_rcsweep", "attack", "gap", "gap_sweep", "suspect", "suspect_reason",
           "seconds_rcsweep", "seconds"]
CLAIMED = 0.99  # what results.csv says of the standard model's robust accuracy


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """std (standard, its robust_acc inflated to CLAIMED in results.csv), adv (adversarial), pq (adv
    pruned 50% and quantized to 4 bits), and a failed trial."""
    folder = tmp_path_factory.mktemp("verify_sweep")
    trials = folder / "trials"
    std = run_trial(TrialConfig(pretrain_epochs=3, **BASE), trials / "std", device="cpu")
    std["metrics"]["robust_acc"] = CLAIMED
    adv = run_trial(TrialConfig(pretrain="adversarial", pretrain_epochs=6, **BASE), trials / "adv", device="cpu")
    pq = run_trial(TrialConfig(pretrain="adversarial", pretrain_epochs=6, compression="prune_quant", sparsity=0.5,
                               weight_bits=4, **BASE), trials / "pq", device="cpu", pretrained_path=trials / "adv")
    upsert_rows(folder, [record_to_row("std", "finished", std), record_to_row("adv", "finished", adv),
                         record_to_row("pq", "finished", pq),
                         record_to_row("broken", "failed", params=TrialConfig(**BASE).to_flat(), error="boom")])
    shutil.copytree(folder, folder.parent / (folder.name + "_pristine"))  # before verify writes its verdicts
    return folder


@pytest.fixture
def copy(sweep, tmp_path):
    return shutil.copytree(sweep.parent / (sweep.name + "_pristine"), tmp_path / "sweep")


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"trial_id": str}).set_index("trial_id", drop=False)


def test_a_robust_model_agrees_with_torchattacks_on_the_same_images(sweep, tmp_path):
    results = (sweep / "results.csv").read_bytes()
    out = tmp_path / "v.csv"
    assert main(["verify", str(sweep), "--trials", "adv", "pq", "--examples", "48", "--out", str(out)]) == 0
    v, rows = read(out), load_sweep(sweep).set_index("trial_id")
    assert list(v.columns) == COLUMNS and list(v.index) == ["adv", "pq"]
    assert (v["n_test"] == 100).all() and (v["n_examples"] == 48).all()
    assert v.loc["pq", "compression"] == "prune_quant" and v.loc["pq", "weight_bits"] == 4
    for tid in ("adv", "pq"):
        r = v.loc[tid]
        assert r["clean_acc_sweep"] == pytest.approx(rows.loc[tid, "clean_acc"])
        assert r["robust_acc_sweep"] == pytest.approx(rows.loc[tid, "robust_acc"])
        assert 0.5 <= r["robust_acc_independent"] <= r["clean_acc"]
        # measured: |gap| 0 to 0.01 over 4 seeds x (adv, pq) x (48, 100 images); 0.05 is 2 images of 48
        assert abs(r["gap"]) <= 0.05
        assert r["gap"] == pytest.approx(r["robust_acc_rcsweep"] - r["robust_acc_independent"])
        assert not r["suspect"], r["suspect_reason"]
    assert "APGD-T" in v["attack"].iloc[0] and "APGD-DLR" in v["attack_rcsweep"].iloc[0]
    # the quantized model is also attacked by transfer from its float twin; the dense one is not
    assert "float twin" in v.loc["pq", "attack"] and "float twin" not in v.loc["adv", "attack"]
    assert v.loc["pq", "robust_acc_independent"] <= v.loc["pq", "robust_acc_white_box"]
    assert v.loc["adv", "robust_acc_independent"] == v.loc["adv", "robust_acc_white_box"]
    # the verdicts flow into results.csv (and the records): the independent number beside the sweep's
    after = load_sweep(sweep).set_index("trial_id")
    for tid in ("adv", "pq"):
        assert after.loc[tid, "verified_robust_acc"] == pytest.approx(v.loc[tid, "robust_acc_independent"])
        assert after.loc[tid, "robust_acc"] == pytest.approx(rows.loc[tid, "robust_acc"]) and not after.loc[tid, "suspect"]
    assert pd.isna(after.loc["std", "verified_robust_acc"])  # not verified
    assert (sweep / "results.csv").read_bytes() != results
    assert not (sweep / "verify.csv").exists()  # --out was given


def test_pareto_is_the_default_an_inflated_claim_is_suspect_and_in_the_report(sweep, capsys):
    (sweep / "verify.csv").write_text("trial_id,suspect\nstale,True\n")
    front = pareto_analysis(load_sweep(sweep), sweep_objectives(sweep)).front
    # 48 images as above: on 32, rcsweep's APGD-DLR leaves standing one image of pq that APGD-T fools (gap 1/32)
    assert main(["verify", str(sweep), "--examples", "48"]) == 0
    v = read(sweep / "verify.csv")
    assert set(v.index) == set(front["trial_id"]) == {"std", "pq"}  # 'stale' is no trial of the sweep: dropped
    assert v.loc["std", "suspect"] and "the sweep's robust_acc 0.990" in v.loc["std", "suspect_reason"]
    assert v.loc["std", "robust_acc_independent"] < CLAIMED - 0.2
    assert not v.loc["pq", "suspect"], v.loc["pq", "suspect_reason"]
    assert "1 of 2 suspect: std" in capsys.readouterr().out
    # the verdict is in the trial's row and record: std leaves the front, with verify's reason
    after = load_sweep(sweep).set_index("trial_id", drop=False)
    reason = after.loc["std", "suspect_reason"]
    assert after.loc["std", "suspect"] and reason.startswith("verify: ") and "the sweep's robust_acc 0.990" in reason
    assert "suspect" in after.loc["std", "flags"].split(";")
    assert "std" not in set(pareto_analysis(after.reset_index(drop=True), sweep_objectives(sweep)).front["trial_id"])
    record = __import__("json").loads((sweep / "trials" / "std" / "record.json").read_text())
    assert record["verification"]["suspect"] and record["metrics"]["suspect"]

    assert main(["report", str(sweep)]) == 0
    text = (sweep / "report" / "report.md").read_text()
    section = text.split("## Independent robustness check")[1]
    suspects = section.split("### Suspect after the independent check")[1]
    assert "| std |" in suspects and "| pq |" not in suspects and "| pq |" in section


@pytest.mark.slow  # ~20 s: FAB-T and Square (5000 queries) run on the examples APGD leaves standing
def test_autoattack(sweep, tmp_path):
    out = tmp_path / "aa.csv"
    assert main(["verify", str(sweep), "--trials", "std", "--attack", "autoattack", "--examples", "16",
                 "--out", str(out)]) == 0
    r = read(out).loc["std"]
    assert "AutoAttack" in r["attack"] and r["n_examples"] == 16
    assert r["robust_acc_independent"] <= r["robust_acc_rcsweep"] + 0.01 and r["suspect"]


def test_judge_compares_a_subset_with_its_sampling_error():
    row = dict(robust_acc_rcsweep=0.5, robust_acc_independent=0.5, n_examples=50, n_test=100, robust_acc_sweep=0.6)
    assert judge(row) == (False, "")  # 0.6 is inside the 95% interval of 0.5 on 50 images
    assert judge({**row, "n_examples": 100})[0]  # the same images: 10 points above
    suspect, reason = judge({**row, "robust_acc_rcsweep": 0.52})
    assert suspect and "same 50 images" in reason


@pytest.mark.parametrize("args, message", [
    (["--trials", "nope"], "trial 'nope' is not in"),
    (["--trials", "broken"], "trial 'broken' did not finish"),
    (["--trials", "adv", "pq", "--remove", "pq"], "trial 'pq' cannot be verified"),
    (["--remove", "std"], "trial 'std' cannot be verified"),  # the front needs every model
    (["--examples", "0"], "--examples must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--attack", "autoattack", "--steps", "5"], "--steps applies to --attack apgd only"),
    (["--out", "v.txt"], "must be a .csv file"),
    (["--no-torchattacks"], "pip install 'rcsweep[verify]'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(copy, args, message, capsys, monkeypatch):
    if "--remove" in args:
        i = args.index("--remove")
        (copy / "trials" / args[i + 1] / "model.pt").unlink()
        args = args[:i] + args[i + 2:]
    if "--no-torchattacks" in args:
        monkeypatch.setitem(__import__("sys").modules, "torchattacks", None)  # import now raises ImportError
        args = [a for a in args if a != "--no-torchattacks"]
    args = [str(copy / a) if a == "v.txt" else a for a in args]
    assert main(["verify", str(copy), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rcsweep: error:") and message in err, err
    assert not (copy / "verify.csv").exists() and not (copy / "v.txt").exists()


def test_missing_folder(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "nope").exists()


def test_judge_exactly_one_point_is_not_more_than_one_point():
    """2 of 200 images is exactly the 1-point tolerance; float32 shares (0.23 - 0.22 = 0.0100000016)
    must not make it 'more than 1 point' (seen on the FashionMNIST study's trial 0d129751)."""
    import numpy as np

    row = dict(robust_acc_rcsweep=float(np.float32(0.23)), robust_acc_independent=float(np.float32(0.22)),
               n_examples=200, n_test=1000, robust_acc_sweep=0.196)
    assert judge(row) == (False, "")
    assert judge({**row, "robust_acc_rcsweep": float(np.float32(0.235))})[0]  # 3 images: more than 1 point
