"""Evaluation integrity end to end (issue 6, item 8): a deliberately gradient-masked model (its
forward rounds the input) is flagged suspect by the checks every trial runs, kept out of the
Pareto front, and listed with its reason in the report."""
import json

import pandas as pd
import torch
from torch import nn

from rcsweep import TrialConfig, run_trial
from rcsweep.cli import main
from rcsweep.models import digits_cnn
from rcsweep.results import record_to_row, upsert_rows


class RoundInput(nn.Module):
    def forward(self, x):  # zero gradient almost everywhere: PGD sees nothing
        return torch.round(x * 4) / 4


def rounded_cnn(in_channels, num_classes, width, input_hw):
    return nn.Sequential(RoundInput(), digits_cnn(in_channels, num_classes, width, input_hw))


SMALL = dict(dataset="digits", batch_size=32, pretrain_epochs=6, eps_eval=0.2, test_size=150, eval_steps=10,
             eval_restarts=1)


def test_masked_model_is_suspect_off_the_front_and_in_the_report(tmp_path):
    sweep = tmp_path / "sweep"
    rows = []
    for tid, model in (("honest", "digits_cnn"), ("masked", "tests.test_reliability_masking:rounded_cnn")):
        record = run_trial(TrialConfig(model=model, **SMALL), sweep / "trials" / tid, device="cpu")
        rows.append(record_to_row(tid, "finished", record))
    upsert_rows(sweep, rows)
    masked = json.loads((sweep / "trials" / "masked" / "record.json").read_text())["metrics"]
    honest = json.loads((sweep / "trials" / "honest" / "record.json").read_text())["metrics"]
    assert masked["suspect"] and "gradient" in masked["suspect_reason"]
    assert not honest["suspect"], honest["suspect_reason"]
    # the masked model looks more robust than it is, and would otherwise dominate
    assert masked["robust_acc"] > honest["robust_acc"]

    assert main(["pareto", str(sweep)]) == 0
    front = pd.read_csv(sweep / "pareto.csv", dtype={"trial_id": str})
    excluded = pd.read_csv(sweep / "pareto_excluded.csv", dtype={"trial_id": str})
    assert list(front["trial_id"]) == ["honest"]
    assert "masked" in set(excluded["trial_id"])

    assert main(["report", str(sweep)]) == 0
    reports = list(sweep.rglob("report.md"))
    assert reports
    text = reports[0].read_text()
    assert "masked" in text and "gradient" in text
