"""The metric table (rcsweep.metrics_table) is the one list of metric names: every metric it
declares is written by every trial that should write it, every metric a trial writes is declared,
and results.csv, the sweep-file schema and the figures read their names from it."""
import pytest

from analysis import pareto, style
from rcsweep import pareto as core_pareto
from rcsweep import TrialConfig, metrics_table, run_trial
from rcsweep.results import METRIC_COLUMNS, load_results, record_to_row, upsert_rows
from rcsweep.sweepfile import METRICS as SWEEP_METRICS

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
