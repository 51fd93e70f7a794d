"""``rcsweep reevaluate``: evaluate saved trials again with the evaluation code installed now,
without training anything.

When rcsweep's evaluation gets stronger (for example the transfer attack from the float twin that
quantized-activation models now also face), a finished sweep's robust accuracies were measured
with the old attack. ``rcsweep reevaluate DIR`` loads each chosen trial's saved model, takes the
test images it was evaluated on and runs the trial's evaluation again (its ``eps_eval``,
``eps_curve``, ``eval_steps``, ``eval_restarts``, masking checks, seeded with the trial's seed),
exactly as the pipeline's evaluate stage does. Efficiency metrics, times and FLOPs do not change.

For each trial, as soon as it is done:

- ``trials/<id>/record.json``: ``metrics`` (clean and robust accuracy, curve, suspect) and
  ``evaluation`` are replaced; what they were is appended to ``reevaluations`` with the time and
  library versions, so nothing measured before is lost;
- its ``results.csv`` row is rewritten from the record (atomically, under the results lock);
- ``reevaluate.csv`` gets one row: before and after side by side.

An interrupted run keeps every trial it finished; running it again with ``--outdated`` picks up
the rest. A folder whose sweep is still running is refused. Ray Tune's own state (what the searcher
was told) keeps the old numbers: a resumed search is guided by them, the results by the new ones.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analysis.common import to_csv, trial_dir

from ..checkpoint import library_versions
from ..config import TrialConfig
from ..data import dataset_info, load_dataset
from ..errors import UserError
from ..evaluate import describe_attack, quantizes_activations
from ..fileio import atomic_write_json
from ..pipeline import TrialData, evaluate_model, evaluation_section, seed_everything
from ..results import record_to_row, upsert_rows
from ..sweep.folder import driver_alive, read_driver
from ..trial_status import FLAG_METRICS, derive_flags
from .features import load_trial
from .verify import check_trials

REEVALUATE_FILE = "reevaluate.csv"
EVAL_METRICS = ("clean_acc", "robust_acc", "robust_acc_curve", "majority_pred_frac") + FLAG_METRICS


def _record(folder, trial_id: str) -> dict:
    path = trial_dir(folder, trial_id) / "record.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"trial {trial_id!r} cannot be re-evaluated: {path} is unreadable ({e})") from None


def current_attack(model, cfg: TrialConfig) -> str:
    """The attack text the installed evaluation gives the trial's model (compare with its record's)."""
    return describe_attack(cfg.eval_steps, cfg.eval_restarts, dataset_info(cfg.dataset).num_classes,
                           quantizes_activations(model), targets=cfg.eval_targets)


def outdated(folder, rows: pd.DataFrame) -> pd.DataFrame:
    """The finished rows whose record was evaluated with another attack than the installed code uses."""
    keep = []
    for i, r in rows[rows["status"] == "finished"].iterrows():
        model, p = load_trial(folder, r["trial_id"])
        recorded = _record(folder, r["trial_id"]).get("evaluation", {}).get("attack")
        if recorded != current_attack(model, TrialConfig.from_flat(p)):
            keep.append(i)
    return rows.loc[keep]


def reevaluate_trial(folder, row, device="cpu", data_dir=None) -> dict:
    """Evaluate one finished trial again, update its record and results.csv row; its reevaluate.csv row."""
    tid = row["trial_id"]
    model, p = load_trial(folder, tid)
    cfg = TrialConfig.from_flat(p)
    record = _record(folder, tid)
    test = load_dataset(cfg.dataset, "test", data_dir=data_dir, test_size=cfg.test_size)
    seed_everything(cfg.seed)
    result = evaluate_model(model.to(device), cfg, TrialData(dataset_info(cfg.dataset), None, None, test), device)

    before = {k: record.get("metrics", {}).get(k) for k in EVAL_METRICS}
    prev_eval = record.get("evaluation")
    record.setdefault("reevaluations", []).append(
        {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "previous_metrics": before,
         "previous_evaluation": prev_eval, "versions": library_versions()})
    acc, record["evaluation"] = evaluation_section(result, dataset_info(cfg.dataset).num_classes)
    record.setdefault("metrics", {}).update(acc)
    derive_flags(record, dataset_info(cfg.dataset).num_classes)  # a verification stays in force
    atomic_write_json(trial_dir(folder, tid) / "record.json", record)
    upsert_rows(folder, [record_to_row(tid, "finished", record, is_reference=bool(row.get("is_reference")))])

    return {"trial_id": tid, "clean_acc_before": before["clean_acc"], "clean_acc": result.clean_acc,
            "robust_acc_before": before["robust_acc"], "robust_acc": result.robust_acc,
            "change": result.robust_acc - before["robust_acc"] if before["robust_acc"] is not None else None,
            "suspect_before": before["suspect"], "suspect": record["metrics"]["suspect"], "n_test": result.n_test,
            "attack_before": (prev_eval or {}).get("attack", ""), "attack": result.attack, "seconds": result.seconds}


def check_not_running(folder) -> None:
    """A UserError when a sweep driver is still running in ``folder`` (its trials write there too)."""
    driver = read_driver(folder)
    if driver_alive(driver) is not False:
        raise UserError(f"{folder} is being run by process {driver['pid']} on {driver['host']}; re-evaluate it "
                        "once the sweep has stopped")


def run_reevaluate(folder, rows: pd.DataFrame, device="cpu", data_dir=None, on_done=None) -> tuple[pd.DataFrame, Path]:
    """Re-evaluate every trial in ``rows`` (results.csv rows; all checked before any is touched) and
    upsert their rows into ``folder/reevaluate.csv`` after each one. Returns (this run's rows, path)."""
    check_not_running(folder)
    rows = rows.drop_duplicates("trial_id")
    check_trials(folder, rows, "re-evaluate", "re-evaluated")
    for _, r in rows.iterrows():
        _record(folder, r["trial_id"])
    path = Path(folder) / REEVALUATE_FILE
    earlier = pd.read_csv(path, dtype={"trial_id": str}) if path.is_file() else pd.DataFrame({"trial_id": []})
    earlier = earlier[~earlier["trial_id"].isin(rows["trial_id"])]  # rows of other trials, from earlier runs
    done = []
    for _, r in rows.iterrows():
        t = time.perf_counter()
        done.append(reevaluate_trial(folder, r, device, data_dir))
        to_csv(pd.concat([earlier, pd.DataFrame(done)], ignore_index=True), path)
        if on_done is not None:
            on_done(done[-1], time.perf_counter() - t)
    return pd.DataFrame(done), path
