"""Experiment trackers (the sweep file's ``tracking``): a tiny sweep on a real local Ray logs each
trial's parameters, per-epoch metrics and final metrics to a local MLflow store (SQLite, MLflow's
default) and to TensorBoard event files, read back here with MLflow's client and TensorBoard's
EventAccumulator."""
import json

import pytest
from conftest_ray import ray_local  # noqa: F401  (session fixture)

from rcsweep import load_results

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

FIXED = dict(dataset="digits", pretrain_epochs=2, batch_size=16, lr=0.1, train_size=200, test_size=40,
             eval_steps=2, eval_restarts=1, finetune_epochs=2, finetune_lr=0.02)


@pytest.fixture(scope="module")
def tracked(ray_local, tmp_path_factory):  # noqa: F811
    from rcsweep.sweep.runner import run_sweep

    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    spec = {"name": "tracked", "fixed": FIXED, "space": {"finetune": {"choice": ["none", "clean"]}},
            "references": [{"finetune": "clean"}], "num_samples": 2, "max_concurrent": 2, "search": "random",
            "tracking": {"mlflow": uri, "tensorboard": True}}
    outcome = run_sweep(spec, storage=root / "store", quiet=True)
    assert (outcome.finished, outcome.failed) == (2, 0)
    return outcome.folder, uri


def _record(folder, trial_id) -> dict:
    return json.loads((folder / "trials" / trial_id / "record.json").read_text())


def test_mlflow_has_each_trials_parameters_epochs_and_final_metrics(tracked):
    from mlflow.tracking import MlflowClient

    folder, uri = tracked
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tracked")
    runs = client.search_runs([exp.experiment_id])
    df = load_results(folder).set_index("trial_id")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        trial_id = next(t for t in df.index if run.info.run_name.endswith(t))
        row, record = df.loc[trial_id], _record(folder, trial_id)
        params, metrics = run.data.params, run.data.metrics
        assert params["trial/finetune"] == row["finetune"] and params["trial/pretrain_epochs"] == "2"
        assert run.data.tags["rcsweep.sweep"] == "tracked" and "estimate" in run.data.tags["rcsweep.energy"]
        assert metrics["robust_acc"] == pytest.approx(row["robust_acc"])
        assert metrics["model_bits"] == pytest.approx(row["model_bits"])
        assert metrics["energy_kwh_evaluate"] == pytest.approx(row["energy_kwh_evaluate"]) and row["energy_kwh_evaluate"] > 0
        # per epoch: every fine-tuning epoch's validation accuracy (and the pretraining's, where this trial trained it)
        history = [m.value for m in client.get_metric_history(run.info.run_id, "val_clean_acc")]
        epochs = [e["val_clean_acc"] for e in record["history"].get("finetune", [])]
        assert all(any(v == pytest.approx(e) for v in history) for e in epochs)
        if row["finetune"] == "clean":
            assert len(epochs) == 2 and metrics["energy_kwh_finetune"] > 0


def test_tensorboard_event_files_hold_the_same_metrics(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, _ = tracked
    df = load_results(folder).set_index("trial_id")
    for trial_id, row in df.iterrows():
        acc = EventAccumulator(str(folder / "tune" / trial_id))
        acc.Reload()
        scalars = acc.Tags()["scalars"]
        assert acc.Scalars("ray/tune/robust_acc")[-1].value == pytest.approx(row["robust_acc"], abs=1e-6)
        assert acc.Scalars("ray/tune/energy_kwh_evaluate")[-1].value > 0
        epochs = [e["val_clean_acc"] for e in _record(folder, trial_id)["history"].get("finetune", [])]
        logged = [s.value for s in acc.Scalars("ray/tune/val_clean_acc")] if "ray/tune/val_clean_acc" in scalars else []
        assert all(any(v == pytest.approx(e, abs=1e-6) for v in logged) for e in epochs)
        assert len(epochs) == (2 if row["finetune"] == "clean" else 0)
