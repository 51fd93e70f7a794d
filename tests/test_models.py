"""Model registry contract: [0, 1] input -> logits, normalisation inside, gradients flow. Every
registered model is tested on every registered dataset whose default model it is; a model that is
no dataset's default fails the suite (register a dataset for it, or extend ``EXTRA_PAIRS``)."""
import pytest
import torch
from torch import nn

from rcsweep.data import DATASETS, dataset_info
from rcsweep.models import MODELS, Normalize, build_model

EXTRA_PAIRS: list = []  # (model, dataset) for models that are no dataset's default
PAIRS = sorted({(DATASETS.get(d).default_model, d) for d in DATASETS.names()} | set(EXTRA_PAIRS))


def test_every_registered_model_is_in_the_contract_suite():
    untested = set(MODELS.names()) - {m for m, _ in PAIRS}
    assert not untested, f"registered models with no dataset to test them on: {sorted(untested)}"


@pytest.mark.parametrize("name, dataset", PAIRS)
def test_model_contract(name, dataset):
    torch.manual_seed(0)
    info = dataset_info(dataset)
    m = build_model(name, dataset, width=0.25 if name == "resnet18" else 1.0)
    assert isinstance(m.normalize, Normalize)
    x = torch.rand(3, *info.shape, requires_grad=True)
    out = m(x)
    assert out.shape == (3, info.num_classes)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    # normalisation is inside: the net sees (x - mean) / std
    with torch.no_grad():
        ref = m.net((x - torch.tensor(info.mean).view(1, -1, 1, 1)) / torch.tensor(info.std).view(1, -1, 1, 1))
    assert torch.allclose(m(x), ref, atol=1e-5)


def test_fmnist_net_is_the_studys_architecture():
    m = build_model("fmnist_net", "fashion_mnist")
    convs = [l for l in m.net if isinstance(l, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2]
    fcs = [l for l in m.net if isinstance(l, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(2048, 128), (128, 10)]
    assert not any(isinstance(l, nn.BatchNorm2d) for l in m.modules())


def test_resnet18_width_scales_parameters():
    full = sum(p.numel() for p in build_model("resnet18", "cifar10").parameters())
    half = sum(p.numel() for p in build_model("resnet18", "cifar10", width=0.5).parameters())
    assert 10.5e6 < full < 11.5e6  # the standard CIFAR ResNet-18 has ~11.2M parameters
    assert 0.2 < half / full < 0.3


def test_user_model_by_import_path():
    m = build_model("tests.test_models:tiny_linear", "digits")
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def tiny_linear(in_channels, num_classes, width, input_hw):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_hw[0] * input_hw[1], num_classes))
