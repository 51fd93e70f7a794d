"""``rcsweep reevaluate``: saved trials evaluated again with the installed evaluation code. A
quantized trial whose record predates the float-twin transfer (simulated by rewriting its record as
the old code wrote it) is found by ``--outdated``, re-evaluated and its inflated robust accuracy
replaced in record.json and results.csv, with the old numbers kept; bad input writes nothing."""
import json
import shutil

import pandas as pd
import pytest

from analysis.common import load_sweep
from rcsweep import TrialConfig, run_trial
from rcsweep.cli import main
from rcsweep.commands import reevaluate as reeval_module
from rcsweep.results import record_to_row, upsert_rows

BASE = dict(dataset="digits", batch_size=32, eps_eval=0.1, eps_curve=[0.05], test_size=100, eval_steps=10,
            eval_restarts=1, pretrain_epochs=3)
OLD_ATTACK = "APGD-CE 10 steps x 1 restarts + APGD-DLR 10 steps, random start"  # before the transfer
INFLATED = 0.97


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """dense (standard, dense) and pq (pruned 50%, weights and activations at 4 bits) as the old
    evaluation left them: pq's record has no transfer in its attack and an inflated robust_acc."""
    folder = tmp_path_factory.mktemp("reevaluate_sweep")
    trials = folder / "trials"
    dense = run_trial(TrialConfig(**BASE), trials / "dense", device="cpu")
    pq = run_trial(TrialConfig(compression="prune_quant", sparsity=0.5, weight_bits=4, act_bits=4, **BASE),
                   trials / "pq", device="cpu", pretrained_path=trials / "dense")
    assert "float twin" in pq["evaluation"]["attack"] and "float twin" not in dense["evaluation"]["attack"]
    pq["metrics"]["robust_acc"] = INFLATED
    pq["evaluation"]["attack"] = OLD_ATTACK
    (trials / "pq" / "record.json").write_text(json.dumps(pq))
    upsert_rows(folder, [record_to_row("dense", "finished", dense, is_reference=True),
                         record_to_row("pq", "finished", pq),
                         record_to_row("broken", "failed", params=TrialConfig(**BASE).to_flat(), error="boom")])
    return folder


@pytest.fixture
def sweep(made, tmp_path):
    return shutil.copytree(made, tmp_path / "sweep")


def record(folder, tid):
    return json.loads((folder / "trials" / tid / "record.json").read_text())


def test_outdated_trials_are_reevaluated_and_the_old_numbers_kept(sweep, capsys):
    dense_record = (sweep / "trials" / "dense" / "record.json").read_bytes()
    before = load_sweep(sweep).set_index("trial_id")
    assert main(["reevaluate", str(sweep), "--outdated"]) == 0
    assert "re-evaluating 1 trial\n" in capsys.readouterr().out

    rec = record(sweep, "pq")
    assert "transferred from the float twin" in rec["evaluation"]["attack"] and rec["evaluation"]["n_test"] == 100
    assert set(rec["evaluation"]["checks"]) == {"large_eps", "more_steps", "pgd_vs_fgsm", "gradient", "black_box"}
    new = rec["metrics"]["robust_acc"]
    assert new < INFLATED - 0.3  # a standard model: the inflated claim is gone
    (old,) = rec["reevaluations"]
    assert old["previous_metrics"]["robust_acc"] == INFLATED and old["previous_evaluation"]["attack"] == OLD_ATTACK
    assert "torch" in old["versions"] and old["at"]
    assert set(rec["metrics"]["robust_acc_curve"]) == {"0.05"}
    assert rec["metrics"]["params"] == before.loc["pq", "params"]  # efficiency untouched

    after = load_sweep(sweep).set_index("trial_id")
    assert after.loc["pq", "robust_acc"] == pytest.approx(new)
    assert after.loc["pq", "clean_acc"] == pytest.approx(rec["metrics"]["clean_acc"])
    assert after.loc["pq", "robust_acc_curve"] == rec["metrics"]["robust_acc_curve"]
    assert not after.loc["pq", "is_reference"] and after.loc["dense", "is_reference"]
    for tid in ("dense", "broken"):  # other rows and records untouched
        pd.testing.assert_series_equal(after.loc[tid], before.loc[tid])
    assert (sweep / "trials" / "dense" / "record.json").read_bytes() == dense_record

    table = pd.read_csv(sweep / "reevaluate.csv", dtype={"trial_id": str})
    assert list(table["trial_id"]) == ["pq"]
    r = table.iloc[0]
    assert r["robust_acc_before"] == INFLATED and r["robust_acc"] == pytest.approx(new)
    assert r["change"] == pytest.approx(new - INFLATED) and r["attack_before"] == OLD_ATTACK

    assert main(["report", str(sweep)]) == 0
    section = (sweep / "report" / "report.md").read_text().split("## Re-evaluated trials")[1]
    assert "| pq |" in section and f"`{OLD_ATTACK}` -> `{rec['evaluation']['attack']}` (1 trial)" in section

    assert main(["reevaluate", str(sweep), "--outdated"]) == 0  # up to date now
    assert "nothing to do" in capsys.readouterr().out
    assert len(record(sweep, "pq")["reevaluations"]) == 1


def test_reevaluation_is_seeded_and_appends_history(sweep):
    assert main(["reevaluate", str(sweep), "--trials", "dense", "pq"]) == 0
    first = {t: record(sweep, t)["metrics"] for t in ("dense", "pq")}
    assert main(["reevaluate", str(sweep), "--all"]) == 0  # every finished trial; 'broken' is skipped
    for t in ("dense", "pq"):
        rec = record(sweep, t)
        assert len(rec["reevaluations"]) == 2
        for k in ("clean_acc", "robust_acc", "robust_acc_curve"):
            assert rec["metrics"][k] == first[t][k]
    table = pd.read_csv(sweep / "reevaluate.csv", dtype={"trial_id": str})
    assert sorted(table["trial_id"]) == ["dense", "pq"]  # one row per trial, the latest run
    assert (table["change"] == 0).all()


def test_an_interrupted_run_keeps_the_trials_it_finished(sweep, monkeypatch):
    real = reeval_module.reevaluate_trial

    def second_fails(folder, row, *a, **k):
        if row["trial_id"] == "pq":
            raise KeyboardInterrupt
        return real(folder, row, *a, **k)

    monkeypatch.setattr(reeval_module, "reevaluate_trial", second_fails)
    assert main(["reevaluate", str(sweep), "--trials", "dense", "pq"]) == 130  # Ctrl-C during the second
    assert len(record(sweep, "dense")["reevaluations"]) == 1 and "reevaluations" not in record(sweep, "pq")
    assert list(pd.read_csv(sweep / "reevaluate.csv", dtype={"trial_id": str})["trial_id"]) == ["dense"]
    assert load_sweep(sweep).set_index("trial_id").loc["pq", "robust_acc"] == INFLATED


@pytest.mark.parametrize("args, message", [
    (["--trials", "nope"], "trial 'nope' is not in"),
    (["--trials", "broken"], "trial 'broken' did not finish"),
    (["--trials", "dense", "pq", "--remove", "pq"], "trial 'pq' cannot be re-evaluated: "),
    (["--trials", "dense", "pq", "--corrupt", "pq"], "trial 'pq' cannot be re-evaluated"),
    (["--all", "--running"], "is being run by process"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(sweep, args, message, capsys):
    if "--running" in args:  # this test process stands in for a live sweep driver
        from rcsweep.sweep.folder import write_driver

        write_driver(sweep)
        args = args[:-1]
    if "--remove" in args or "--corrupt" in args:
        i = len(args) - 2
        folder = sweep / "trials" / args[i + 1]
        if args[i] == "--remove":
            (folder / "model.pt").unlink()
        else:
            (folder / "record.json").write_text("{not json")
        args = args[:i]
    results = (sweep / "results.csv").read_bytes()
    dense_record = (sweep / "trials" / "dense" / "record.json").read_bytes()
    assert main(["reevaluate", str(sweep), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rcsweep: error:") and message in err, err
    assert (sweep / "results.csv").read_bytes() == results
    assert (sweep / "trials" / "dense" / "record.json").read_bytes() == dense_record
    assert not (sweep / "reevaluate.csv").exists()


def test_a_selection_is_required(sweep, capsys):
    with pytest.raises(SystemExit) as e:
        main(["reevaluate", str(sweep)])
    assert e.value.code == 2 and "one of the arguments --outdated --all --trials is required" in capsys.readouterr().err
