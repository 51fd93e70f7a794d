"""Model registry. Every model takes images in [0, 1] and normalises inside itself
(``Normalize`` as its first layer), so epsilons are always in pixel units.

A registered model is a factory ``(in_channels, num_classes, width, input_hw) -> nn.Module``
that expects *normalised* input; :func:`build_model` wraps it with the dataset's normalisation.
"""
from __future__ import annotations

import torch
from torch import nn

from .data import DatasetInfo, dataset_info
from .errors import UserError
from .registry import Registry

MODELS: Registry = Registry("model")


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers, not parameters, so nothing prunes or quantizes it."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class RobustModel(nn.Module):
    """``[0, 1]`` images -> logits: normalisation followed by the network."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x):
        return self.net(self.normalize(x))


def build_model(name: str, dataset: str | DatasetInfo, width: float = 1.0) -> RobustModel:
    info = dataset if isinstance(dataset, DatasetInfo) else dataset_info(dataset)
    factory = MODELS.get(name)
    c, h, w = info.shape
    net = factory(in_channels=c, num_classes=info.num_classes, width=width, input_hw=(h, w))
    if not isinstance(net, nn.Module):
        raise UserError(f"model {name!r} factory did not return a torch.nn.Module")
    return RobustModel(net, info.mean, info.std)


def _ch(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def _conv_out(size: int, stride: int) -> int:  # 3x3, padding 1
    return (size - 1) // stride + 1


@MODELS.register("fmnist_net")
def fmnist_net(in_channels=1, num_classes=10, width=1.0, input_hw=(28, 28)):
    """The study's FashionMNIST net: six 3x3 convs (32, 32/2, 64, 64/2, 128, 128/2) with ReLU,
    then 2048 -> 128 -> 10 fully connected. No BatchNorm, as in the study, so the weights start
    with He (Kaiming normal) initialisation: with PyTorch's default the signal shrinks by about 3x
    in variance per layer, and adversarial training from scratch stayed at chance for 10 epochs."""
    plan = [(32, 1), (32, 2), (64, 1), (64, 2), (128, 1), (128, 2)]
    layers, c = [], in_channels
    h, w = input_hw
    for base, stride in plan:
        layers += [nn.Conv2d(c, _ch(base, width), 3, stride, 1), nn.ReLU()]
        c = _ch(base, width)
        h, w = _conv_out(h, stride), _conv_out(w, stride)
    layers += [nn.Flatten(), nn.Linear(c * h * w, _ch(128, width)), nn.ReLU(),
               nn.Linear(_ch(128, width), num_classes)]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


@MODELS.register("digits_cnn")
def digits_cnn(in_channels=1, num_classes=10, width=1.0, input_hw=(8, 8)):
    """A small CNN for 8x8 digits: 3x3 convs 16, 32/2, 32/2, then 64 hidden units."""
    plan = [(16, 1), (32, 2), (32, 2)]
    layers, c = [], in_channels
    h, w = input_hw
    for base, stride in plan:
        layers += [nn.Conv2d(c, _ch(base, width), 3, stride, 1), nn.ReLU()]
        c = _ch(base, width)
        h, w = _conv_out(h, stride), _conv_out(w, stride)
    layers += [nn.Flatten(), nn.Linear(c * h * w, _ch(64, width)), nn.ReLU(), nn.Linear(_ch(64, width), num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), in_channels=3, num_classes=10, width=1.0):
        super().__init__()
        c = _ch(64, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)  # CIFAR stem: 3x3, no max-pool
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        stages = []
        for i, n in enumerate(blocks):
            c_out = _ch(64 * 2 ** i, width)
            for j in range(n):
                stages.append(BasicBlock(c, c_out, 2 if (j == 0 and i > 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.flatten(self.pool(x)))


@MODELS.register("resnet18")
def resnet18(in_channels=3, num_classes=10, width=1.0, input_hw=(32, 32)):
    """CIFAR-10 ResNet-18 (3x3 stem, no max-pool); ``width`` scales every channel count."""
    return ResNet((2, 2, 2, 2), in_channels, num_classes, width)
