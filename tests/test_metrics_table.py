"""The metric table (rcsweep.metrics_table) is the one list of metric names: every metric it
declares is written by every trial that should write it, every metric a trial writes is declared,
and results.csv, the sweep-file schema and the figures read their names from it."""
import dataclasses
import pytest

from analysis import pareto, style
from rcsweep import pareto as core_pareto
from rcsweep import TrialConfig, metrics_table, run_trial
from rcsweep.results import METRIC_COLUMNS, add_flag, load_results, record_to_row, upsert_rows
from rcsweep.sweepfile import METRICS as SWEEP_METRICS
from rcsweep.trial_status import exclusion

TINY = dict(dataset="digits", pretrain_epochs=3, test_size=60, batch_size=32, eval_steps=2,
            eval_restarts=1)
ROUTES = {
    "dense": dict(),
    "prune": dict(compression="prune", sparsity=0.5, finetune="clean", finetune_epochs=1),
    "prune_structured": dict(compression="prune_structured", sparsity=0.5),
    "w8a8": dict(compression="quant", weight_bits=8, act_bits=8),  # the integer-model check
    "w4a4": dict(compression="prune_quant", sparsity=0.3, weight_bits=4, act_bits=4, finetune="adversarial",
                 finetune_epochs=1),
}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = {}
    pre = None
    for name, kw in ROUTES.items():
        folder = tmp_path_factory.mktemp(name)
        out[name] = run_trial(TrialConfig(**TINY, **kw), folder, device="cpu", pretrained_path=pre)
        pre = pre or folder
    return out


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_declared_metric_is_written_by_a_trial_that_should_write_it(records, route):
    rec = records[route]
    metrics = rec["metrics"]
    should = [m.name for m in metrics_table.METRICS if metrics_table.applies(m, rec["params"])]
    missing = [n for n in should if n not in metrics]
    assert not missing, f"{route} does not write {missing}"
    undeclared = sorted(set(metrics) - set(metrics_table.BY_NAME))
    assert not undeclared, f"{route} writes metrics the table does not declare: {undeclared}"
    assert not metrics_table.invalid(metrics), metrics_table.invalid(metrics)
    # what this model alone cost: its pretrained model's whole pretraining (shared or not) + its fine-tuning
    assert metrics["flops_route"] == metrics["flops_pretrain"] + metrics["flops_finetune"] > 0
    # energy per stage, the reused pretraining's read from the record beside its model (rcsweep.energy)
    stages = [metrics[f"energy_kwh_{s}"] for s in ("pretrain", "compress", "finetune", "evaluate")]
    assert metrics["energy_kwh_pretrain"] == records["dense"]["metrics"]["energy_kwh_pretrain"] > 0
    assert metrics["energy_kwh_evaluate"] > 0 and (metrics["energy_kwh_finetune"] > 0 or rec["params"]["finetune"] == "none")
    assert metrics["co2_g"] == pytest.approx(sum(stages) * 445.0) and metrics["energy_source"]
    assert "infeasible_reason" not in metrics  # the sweep writes it, for constrained sweeps


def test_int8_metrics_only_where_they_apply(records):
    assert records["w8a8"]["metrics"]["int8_transfer_robust_acc"] is not None  # the column was never written before
    assert "int8_transfer_robust_acc" not in records["w4a4"]["metrics"]
    assert "int8_clean_acc" not in records["dense"]["metrics"]


def test_results_csv_columns_are_filled_from_the_records(records, tmp_path):
    upsert_rows(tmp_path, [record_to_row(name, "finished", rec) for name, rec in records.items()])
    df = load_results(tmp_path).set_index("trial_id")
    for name, rec in records.items():
        for m in metrics_table.METRICS:
            if m.column and metrics_table.applies(m, rec["params"]) and m.kind in ("float", "int"):
                assert df.loc[name, m.name] == pytest.approx(rec["metrics"][m.name]), (name, m.name)
    assert df.loc["w8a8", "int8_transfer_robust_acc"] == pytest.approx(
        records["w8a8"]["metrics"]["int8_transfer_robust_acc"])


def test_old_records_are_read_under_the_new_names():
    row = record_to_row("old", "finished", {"params": {}, "metrics": {"transfer_int8_acc": 0.5}})
    assert row["int8_transfer_robust_acc"] == 0.5 and "transfer_int8_acc" not in row


def test_old_records_and_results_get_the_route_cost_from_its_parts(tmp_path):
    import pandas as pd

    row = record_to_row("old", "finished", {"params": {}, "metrics": {"flops_pretrain": 3e9, "flops_finetune": 1e9}})
    assert row["flops_route"] == 4e9
    half = record_to_row("half", "finished", {"params": {}, "metrics": {"flops_pretrain": 3e9}})
    assert "flops_route" not in half
    upsert_rows(tmp_path, [{**row, "trial_id": "kept", "flops_route": 5e9}, row, half])
    path = tmp_path / "results.csv"
    old = pd.read_csv(path)
    old.loc[old["trial_id"] == "old", "flops_route"] = None  # written before the column was
    old.to_csv(path, index=False)
    df = load_results(tmp_path).set_index("trial_id")
    assert df.loc["old", "flops_route"] == 4e9 and df.loc["kept", "flops_route"] == 5e9
    assert pd.isna(df.loc["half", "flops_route"])
    old.drop(columns=["flops_route"]).to_csv(path, index=False)  # ... or before the column existed
    assert load_results(tmp_path).set_index("trial_id").loc["old", "flops_route"] == 4e9


def test_infeasible_reason_is_the_sweeps_not_a_trials():
    m = metrics_table.metric("infeasible_reason")
    assert m.kind == "str" and m.direction is None and m.name in METRIC_COLUMNS
    assert not metrics_table.applies(m, {"compression": "quant", "weight_bits": 8, "act_bits": 8})
    row = add_flag(record_to_row("t", "finished", {"params": {}, "metrics": {}}), "infeasible", "model_bits > 1e5")
    assert exclusion(row) == "infeasible: model_bits > 1e5"


def test_every_reader_takes_its_names_from_the_table():
    assert set(METRIC_COLUMNS) == {m.name for m in metrics_table.METRICS if m.column}
    assert set(SWEEP_METRICS) == set(metrics_table.OBJECTIVES)
    for m in metrics_table.METRICS:
        if m.direction is not None:
            assert m.name in METRIC_COLUMNS  # an objective is a column
            assert style.axis_label(m.name) == m.label.format(eps="")
        if m.scale == "unit":
            assert m.name in core_pareto.UNIT_COLUMNS
        if m.scale in ("log_ref", "log_dense"):
            assert m.name in core_pareto.LOG_COLUMNS
    assert pareto.DEFAULT_OBJECTIVES == "robust_acc:max,model_bits:min"


def test_which_metrics_apply_follows_the_parameters_not_the_method_name():
    """A compression method that quantizes is known by its quantization parameters (the registry
    gives them exactly to such methods), not by a name ending in ``quant``."""
    int8 = next(m for m in metrics_table.METRICS if m.when == "int8")
    act = dataclasses.replace(int8, when="act_quant")  # the table names no such metric today; its rule still holds
    assert metrics_table.applies(act, {"compression": "lowrank_then_int", "weight_bits": 4, "act_bits": 8})
    assert metrics_table.applies(int8, {"compression": "my_quantizer", "weight_bits": 8, "act_bits": 8})
    # no quantization part: no weight_bits (None in a record, a blank or NaN cell in results.csv)
    for blank in (None, "", float("nan")):
        assert not metrics_table.applies(act, {"compression": "fake_quant", "weight_bits": blank, "act_bits": 8})
    assert not metrics_table.applies(act, {"compression": "quant", "weight_bits": 8, "act_bits": float("nan")})
