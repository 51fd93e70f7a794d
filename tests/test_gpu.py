"""The CUDA paths (marked ``gpu``: skipped without a CUDA device; benchmarks/gpu_check.py runs them
on a GPU machine). Imports no Ray, Optuna or Torch-Pruning: that machine has none of them.

A trial runs on the GPU with its data there once and its model in channels_last; bf16 autocast
covers training, never the evaluation; a model trained on the GPU loads on the CPU and the other way
round with the same outputs; a device index the machine lacks is refused; Ray's GPU placement picks
CUDA when it is usable; evaluation batches grow with the GPU's free memory.
"""
import pytest
import torch
from torch import nn

from rcsweep import TrialConfig, run_trial
from rcsweep.checkpoint import load_model, save_model
from rcsweep.device import eval_batch_size, float32, parse_device, placement_device
from rcsweep.errors import DeviceUnavailable
from rcsweep.evaluate import evaluate
from rcsweep.pipeline import load_trial_data, pretrain

pytestmark = pytest.mark.gpu

TINY = dict(dataset="digits", pretrain_epochs=3, batch_size=32, test_size=100, eval_steps=5, eval_restarts=1)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_trial_runs_on_the_gpu_and_records_it(tmp_path, precision):
    record = run_trial(TrialConfig(precision=precision, **TINY), tmp_path, device="cuda")
    rt = record["runtime"]
    assert rt["device"] == "cuda" and rt["device_name"] != "cpu" and rt["peak_gpu_memory_bytes"] > 0
    assert record["metrics"]["clean_acc"] > 0.5
    assert record["params"]["precision"] == precision


def test_data_lives_on_the_gpu_and_batches_are_cut_there():
    from rcsweep.batching import batches

    data = load_trial_data(TrialConfig(**TINY), device="cuda")
    assert all(t.is_cuda for split in (data.train, data.val, data.test) for t in split)
    assert data.to("cuda") is data
    xb, yb = next(batches(*data.train, 32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert xb.is_cuda and yb.is_cuda


def test_models_go_channels_last_on_cuda_and_bf16_never_reaches_the_evaluation():
    cfg = TrialConfig(precision="bf16", **TINY)
    data = load_trial_data(cfg, device="cuda")
    seen = []
    model, _ = pretrain(cfg, data, "cuda")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(lambda _, __, out: seen.append(out.dtype))
    tf32 = []
    model.register_forward_hook(lambda *_: tf32.append(torch.backends.cudnn.allow_tf32))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        evaluate(model, *data.test, norm="linf", eps_eval=0.1, steps=5, restarts=1, device="cuda")
    assert seen and set(seen) == {torch.float32}
    assert tf32 and not any(tf32)  # no TF32 convolutions in the evaluation either
    assert torch.backends.cudnn.allow_tf32  # and the default is back afterwards


def test_a_model_moves_between_gpu_and_cpu_with_its_outputs(tmp_path):
    cfg = TrialConfig(**TINY)
    data = load_trial_data(cfg)
    model, _ = pretrain(cfg, data.to("cuda"), "cuda")
    save_model(model, tmp_path / "m", cfg)
    on_cpu = load_model(tmp_path / "m", "cpu")
    back = load_model(tmp_path / "m", "cuda")
    x = data.test[0][:64]
    assert next(on_cpu.parameters()).device.type == "cpu" and next(back.parameters()).is_cuda
    with float32("cuda"):  # no TF32: the two devices' kernels differ only in summation order
        torch.testing.assert_close(on_cpu(x), back(x.cuda()).cpu(), rtol=1e-4, atol=1e-4)


def test_devices_the_machine_lacks_are_refused_and_ray_gpus_are_used():
    n = torch.cuda.device_count()
    assert parse_device(f"cuda:{n - 1}") == torch.device(f"cuda:{n - 1}")
    with pytest.raises(DeviceUnavailable, match=f"this machine has {n} CUDA device"):
        parse_device(f"cuda:{n}")
    device, placement = placement_device(["0"], node="here")
    assert device.type == "cuda" and placement["fallback"] is None and placement["cuda_available"]


def test_evaluation_batches_grow_with_free_gpu_memory():
    from rcsweep.models import build_model

    model = build_model("resnet18", "cifar10").cuda()
    n = eval_batch_size(model, (3, 32, 32), "cuda")
    assert n >= 256 and n & (n - 1) == 0
    assert eval_batch_size(model, (3, 32, 32), "cuda", free_bytes=1 << 30) <= n
