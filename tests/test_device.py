"""Devices and precision without a GPU (rcsweep.device): a device this machine lacks is refused in
one line, a GPU Ray assigned on a node without usable CUDA fails or falls back as asked, bf16
autocast covers training and its attack but never the evaluation, channels_last leaves outputs as
they were, evaluation batches are sized to the device, and a model saved from a CUDA device loads
on the CPU (map_location)."""
import io

import pytest
import torch
from torch import nn

from rcsweep import TrialConfig
from rcsweep.checkpoint import load_state_dict
from rcsweep.device import (CPU_EVAL_BATCH, EVAL_BATCH_RANGE, activation_bytes, autocast, eval_batch_size,
                            fit_batch, parse_device, placement_device, to_device_)
from rcsweep.errors import ConfigError, DeviceUnavailable
from rcsweep.evaluate import evaluate
from rcsweep.models import build_model
from rcsweep.objectives import OBJECTIVES
from rcsweep.pipeline import load_trial_data
from rcsweep.train import train_epoch


def _pretend_cuda(monkeypatch, count: int):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_parse_device_refuses_what_this_machine_lacks(monkeypatch):
    assert parse_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert parse_device(None) == torch.device("cpu")
        with pytest.raises(DeviceUnavailable, match=r"--device cuda:7: CUDA is not usable here"):
            parse_device("cuda:7")
    for bad, needle in (("gpu", "'gpu' is not a device"), ("meta", "runs on cpu or cuda, not meta")):
        with pytest.raises(DeviceUnavailable, match=needle):
            parse_device(bad)
    _pretend_cuda(monkeypatch, 2)
    assert parse_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceUnavailable, match=r"cuda:7: this machine has 2 CUDA device\(s\), cuda:0 to cuda:1") as e:
        parse_device("cuda:7")
    assert "\n" not in str(e.value)


def test_placement_follows_ray_and_never_falls_back_silently(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, placement = placement_device([], node="n1")
    assert device.type == "cpu" and placement == {"gpu_ids": [], "cuda_available": False, "fallback": None,
                                                  "device": "cpu"}
    with pytest.raises(DeviceUnavailable) as e:
        placement_device([1], node="10.0.0.5 (abcd1234)")
    msg = str(e.value)
    assert "\n" not in msg and "10.0.0.5 (abcd1234)" in msg and "gpu_fallback: cpu" in msg and "GPU(s) 1" in msg
    device, placement = placement_device(["0", "1"], cpu_fallback=True, node="n1")
    assert device.type == "cpu" and placement["gpu_ids"] == ["0", "1"]
    assert "ran on the CPU" in placement["fallback"] and "n1" in placement["fallback"]
    _pretend_cuda(monkeypatch, 1)
    device, placement = placement_device([0], node="n1")
    assert device == torch.device("cuda") and placement["fallback"] is None and placement["device"] == "cuda"


def test_precision_is_validated_and_keys_the_pretrained_model_only_when_not_fp32():
    with pytest.raises(ConfigError, match="precision: must be one of fp32, bf16; got 'fp16'"):
        TrialConfig(precision="fp16")
    fp32, bf16 = TrialConfig(), TrialConfig(precision="bf16")
    assert "precision" not in fp32.pretrain_key()  # sweeps stored before the option keep their models
    assert bf16.pretrain_key() == {**fp32.pretrain_key(), "precision": "bf16"}
    assert TrialConfig.from_flat(bf16.to_flat()) == bf16


class _Dtypes:
    """Records the dtype of every Conv2d / Linear output of ``model``."""

    def __init__(self, model):
        self.seen = []
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.register_forward_hook(lambda _, __, out: self.seen.append(out.dtype))


def test_bf16_autocast_covers_training_and_its_attack_never_the_evaluation():
    cfg = TrialConfig(dataset="digits", train_size=64, test_size=32)
    data = load_trial_data(cfg)
    model = build_model(cfg.model, data.info)
    dtypes = _Dtypes(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = data.train
    # PGD-AT: the attack's forward-backward passes and the loss's forward all run in bf16
    loss, _ = train_epoch(model, x, y, opt, objective=OBJECTIVES.get("adversarial")(), batch_size=32, device="cpu",
                          eps=0.1, attack_steps=2, bf16=True)
    assert torch.isfinite(torch.tensor(loss))
    assert dtypes.seen and set(dtypes.seen) == {torch.bfloat16}
    assert len(dtypes.seen) >= 2 * (2 + 1) * 5  # 2 batches x (2 attack steps + the loss) x 5 layers
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    dtypes.seen.clear()
    train_epoch(model, x, y, opt, objective=OBJECTIVES.get("standard")(), batch_size=32, device="cpu")
    assert set(dtypes.seen) == {torch.float32}  # fp32 (the default) uses no autocast
    dtypes.seen.clear()
    with autocast("cpu", bf16=True):  # even called inside an autocast region, the evaluation is float32
        evaluate(model, *data.test, norm="linf", eps_eval=0.1, steps=2, restarts=1, device="cpu", checks=True)
    assert dtypes.seen and set(dtypes.seen) == {torch.float32}


def test_channels_last_keeps_outputs_and_trains():
    cfg = TrialConfig(dataset="digits", train_size=64)
    data = load_trial_data(cfg)
    torch.manual_seed(0)
    plain = build_model(cfg.model, data.info)
    last = build_model(cfg.model, data.info)
    last.load_state_dict(plain.state_dict())
    assert to_device_(last, "cpu", channels_last=True) is last
    convs = [m for m in last.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not to_device_(plain, "cpu").net[2].weight.is_contiguous(memory_format=torch.channels_last)  # CPU default
    x = data.train[0][:16]
    torch.testing.assert_close(last(x), plain(x), rtol=1e-5, atol=1e-5)
    opt = torch.optim.SGD(last.parameters(), lr=0.05)
    loss, _ = train_epoch(last, *data.train, opt, objective=OBJECTIVES.get("standard")(), batch_size=32, device="cpu")
    assert torch.isfinite(torch.tensor(loss))
    assert convs[0].weight.is_contiguous(memory_format=torch.channels_last)  # SGD keeps the layout


def test_eval_batches_are_sized_to_the_device():
    model = build_model("digits_cnn", "digits")
    assert eval_batch_size(model, (1, 8, 8), "cpu") == CPU_EVAL_BATCH == 256
    per_example = activation_bytes(model, (1, 8, 8), "cpu")
    # input normalisation + 3 convs + relus + flatten + 2 linears, float32
    assert per_example == 4 * (64 + 2 * 16 * 64 + 2 * 32 * 16 + 2 * 32 * 4 + 128 + 2 * 64 + 10)
    lo, hi = EVAL_BATCH_RANGE
    assert fit_batch(per_example, 0) == lo and fit_batch(per_example, 1 << 50) == hi
    mid = fit_batch(1 << 20, 48 << 30)  # 1 MiB per example, 48 GiB free: 12 GiB / 3 MiB = 4096
    assert mid == 4096 and mid & (mid - 1) == 0


def test_trial_data_moves_to_its_device_once():
    data = load_trial_data(TrialConfig(dataset="digits", train_size=64, test_size=32))
    assert data.to("cpu") is data  # already there: no copy
    on_meta = data.to("meta")
    assert all(t.device.type == "meta" for split in (on_meta.train, on_meta.val, on_meta.test) for t in split)
    assert on_meta.to("meta") is on_meta


def test_a_model_saved_from_a_cuda_device_loads_on_the_cpu(tmp_path, monkeypatch):
    """A state_dict whose storages say cuda:0 (torch.save on a GPU) loads here: map_location."""
    from torch import serialization

    state = build_model("digits_cnn", "digits").state_dict()
    monkeypatch.setattr(serialization, "location_tag", lambda storage: "cuda:0")
    buf = io.BytesIO()
    torch.save(state, buf)
    monkeypatch.undo()
    pt = tmp_path / "model.pt"
    pt.write_bytes(buf.getvalue())
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # what loading without map_location does here
            torch.load(pt, weights_only=True)
    loaded = load_state_dict(pt, None)
    assert all(v.device.type == "cpu" for v in loaded.values())
    assert all(torch.equal(loaded[k], state[k]) for k in state)
