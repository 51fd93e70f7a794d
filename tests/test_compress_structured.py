"""Structured (channel) pruning with Torch-Pruning: real shape changes, residual networks, errors."""
from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from rcsweep import TrialConfig, load_model, save_model
from rcsweep.compress import compress_, prunable_layers
from rcsweep.compress.structured import removed_count
from rcsweep.errors import UserError
from rcsweep.metrics import count_macs
from rcsweep.models import build_model


# models that structured pruning cannot prune (loaded by import path: 'test_compress_structured:...')
def linear_only(in_channels=1, num_classes=10, width=1.0, input_hw=(8, 8)):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_hw[0] * input_hw[1], num_classes))


class _Hardcoded(nn.Module):
    """Reshapes to a fixed size, so removing conv channels breaks it."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).reshape(-1, 512))


def hardcoded(in_channels=1, num_classes=10, width=1.0, input_hw=(8, 8)):
    return _Hardcoded()


def _calib(shape, n=8):
    torch.manual_seed(0)
    return torch.rand(n, *shape), torch.randint(0, 10, (n,))


def _channels(model, shape):
    return {n: m.weight.shape[0] for n, m in prunable_layers(model, shape)}


@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_digits_channels_removed_per_layer(sparsity):
    shape = (1, 8, 8)
    cfg = TrialConfig(dataset="digits", compression="prune_structured", sparsity=sparsity)
    model = build_model("digits_cnn", "digits")
    dense = _channels(model, shape)
    comp = compress_(model, cfg, _calib(shape))
    got = _channels(model, shape)
    for n, c in dense.items():  # exactly round(sparsity x c) channels gone from each layer
        assert c - got[n] == removed_count(sparsity, c) == int(sparsity * c + 0.5)
    assert comp.info["out_channels"] == got
    assert model(torch.rand(4, *shape)).shape == (4, 10)


def test_resnet18_residual_channels_prune_consistently(tmp_path):
    shape = (3, 32, 32)
    cfg = TrialConfig(dataset="cifar10", width=0.25, compression="prune_structured", sparsity=0.5)
    model = build_model("resnet18", "cifar10", width=0.25).eval()
    macs, params = count_macs(model, shape), sum(p.numel() for p in model.parameters())
    comp = compress_(model, cfg, _calib(shape))
    x = torch.rand(4, *shape)
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape == (4, 10)
    for blk in model.net.layers:  # every conv, BatchNorm and shortcut agrees on its channels
        assert blk.bn1.num_features == blk.conv1.out_channels == blk.conv2.in_channels
        assert blk.bn2.num_features == blk.conv2.out_channels
    assert model.net.fc.out_features == 10
    assert 3.0 < macs / count_macs(model, shape) < 4.5  # ~half the channels in and out: ~1/4 of the MACs
    assert sum(p.numel() for p in model.parameters()) < 0.3 * params
    save_model(model, tmp_path, cfg, {"compression": comp.info})
    loaded = load_model(tmp_path)
    assert _channels(loaded, shape) == _channels(model, shape)  # physically smaller shapes after loading
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


@pytest.mark.parametrize("factory, needle", [("linear_only", "no Conv2d/Linear besides its classifier"),
                                             ("hardcoded", "cannot remove channels")])
def test_model_it_cannot_prune_is_a_user_error(factory, needle):
    cfg = TrialConfig(dataset="digits", model=f"{__name__}:{factory}", compression="prune_structured")
    model = build_model(cfg.model, "digits")
    with pytest.raises(UserError) as e:
        compress_(model, cfg, _calib((1, 8, 8)))
    msg = str(e.value)
    assert needle in msg and factory in msg and "\n" not in msg


def test_cli_reports_unprunable_model_in_one_line_exit_2(tmp_path, capsys):
    from rcsweep.cli import main

    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"fixed": {"dataset": "digits", "pretrain_epochs": 0},
                                     "space": {"seed": {"choice": [0]}}}))
    rc = main(["trial", str(sweep), "--set", f"model={__name__}:linear_only", "compression=prune_structured",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "linear_only" in err
    assert not (tmp_path / "o" / "record.json").exists()
