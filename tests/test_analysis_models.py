"""Analyses that need saved models: ``rcsweep features`` and ``rcsweep export`` (its formats and
checks: tests/test_export.py), on a real tiny digits sweep (two trials, a few seconds), and the
feature-change computation on a known model."""
import csv

import pandas as pd
import pytest
import torch
from torch import nn

from rcsweep.commands.features import activation_maps, feature_layers, layer_changes
from rcsweep import TrialConfig, load_model, run_trial
from rcsweep.cli import main
from rcsweep.results import record_to_row, upsert_rows

TINY = dict(pretrain_epochs=3, batch_size=32, train_size=400, test_size=100, eval_steps=5, eval_restarts=1)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    rows = []
    base = folder / "trials" / "dense"
    rows.append(record_to_row("dense", "finished", run_trial(TrialConfig(**TINY), out_dir=base)))
    cfg = TrialConfig(**TINY, finetune="clean", finetune_epochs=1)
    rows.append(record_to_row("ft", "finished", run_trial(cfg, out_dir=folder / "trials" / "ft", pretrained_path=base)))
    cfg = TrialConfig(**TINY, compression="quant", weight_bits=4)
    rows.append(record_to_row("q", "finished", run_trial(cfg, out_dir=folder / "trials" / "q", pretrained_path=base)))
    upsert_rows(folder, rows)
    return folder


def test_layer_change_of_a_known_model():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4))
        model[2].weight.copy_(torch.ones(2, 4))
    x = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    ch = layer_changes(model, x, 2 * x)  # every activation doubles: relative change 1
    assert ch["layer"].tolist() == ["fc1 (4) + ReLU", "logits (2)"]
    assert ch["rel_change"].tolist() == pytest.approx([1.0, 1.0])
    ch = layer_changes(model, x, x)
    assert ch["rel_change"].tolist() == [0.0, 0.0]


def test_feature_layers_of_the_digits_cnn(sweep):
    names = [n for n, _ in feature_layers(load_model(sweep / "trials" / "dense"))]
    assert names == ["conv1 (16) + ReLU", "conv2 (32) + ReLU", "conv3 (32) + ReLU", "fc1 (64) + ReLU", "logits (10)"]


def test_a_quantized_layer_is_one_layer_with_its_quantizers_inside(sweep, tmp_path):
    # its fake-quantizers are submodules: the layer was not a leaf and was missed (a new user's
    # rcsweep features on a quantized trial crashed on an empty table)
    names = [n for n, _ in feature_layers(load_model(sweep / "trials" / "q"))]
    assert names == ["conv1 (16) + ReLU", "conv2 (32) + ReLU", "conv3 (32) + ReLU", "fc1 (64) + ReLU", "logits (10)"]
    assert main(["features", str(sweep), "--trials", "q", "--examples", "16", "--out", str(tmp_path / "f")]) == 0
    assert len(pd.read_csv(tmp_path / "f.csv")) == 5


def test_features_command(sweep, tmp_path):
    out = tmp_path / "feat"
    assert main(["features", str(sweep), "--trials", "dense", "ft", "--examples", "32", "--out", str(out)]) == 0
    df = pd.read_csv(tmp_path / "feat.csv")
    assert set(df["trial_id"]) == {"dense", "ft"} and len(df) == 10
    assert ((df["rel_change"] > 0) & (df["rel_change"] < 50)).all()
    assert (df["eps"] == 0.1).all() and (df["n"] == 32).all()
    for name in ("feat.png", "feat.svg", "feat_maps.png", "feat_maps.svg"):
        assert (tmp_path / name).is_file(), name


def test_activation_maps_pick_the_most_changed_channels(sweep):
    model = load_model(sweep / "trials" / "dense")
    x = torch.rand(4, 1, 8, 8)
    x_adv = (x + 0.1).clamp(0, 1)
    maps = activation_maps(model, x, torch.zeros(4, dtype=torch.long), x_adv, n_channels=3, index=1)
    assert maps["clean"].shape == (16, 8, 8) and len(maps["channels"]) == 3 and maps["index"] == 1
    change = abs(maps["adv"] - maps["clean"]).reshape(16, -1).mean(1)
    assert change[maps["channels"][0]] == change.max()


def test_features_unknown_trial_is_exit_2(sweep, capsys):
    assert main(["features", str(sweep), "--trials", "nope"]) == 2
    assert "has no saved model" in capsys.readouterr().err


def test_export_pareto_writes_loadable_models(sweep, tmp_path):
    out = tmp_path / "ship"
    assert main(["export", str(sweep), "--pareto", "--format", "state_dict", "--out", str(out)]) == 0
    with open(out / "trials.csv", newline="") as f:
        ids = [r["trial_id"] for r in csv.DictReader(f)]
    assert ids and set(ids) <= {"dense", "ft", "q"}
    x = torch.rand(5, 1, 8, 8)
    for tid in ids:
        assert (out / tid / "model.json").is_file() and (out / tid / "model_card.json").is_file()
        a, b = load_model(out / tid), load_model(sweep / "trials" / tid)
        assert torch.equal(a(x), b(x))


def test_export_refuses_a_corrupted_model(sweep, tmp_path, capsys):
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(sweep, bad)
    with open(bad / "trials" / "dense" / "model.pt", "ab") as f:
        f.write(b"x")
    assert main(["export", str(bad), "--trials", "ft", "dense", "--format", "state_dict",
                 "--out", str(tmp_path / "ship")]) == 2
    assert "corrupted" in capsys.readouterr().err and not (tmp_path / "ship").exists()
