"""Wide ResNets (Zagoruyko and Komodakis 2016): pre-activation blocks, three groups.

WRN-d-k has ``(d - 4) / 6`` blocks per group and 16k/32k/64k channels. Being
pre-activation, a group's sum is only normalised and activated by the next group's
first block (or by the head after the last group); those BN+ReLU pairs are where the
``stageK`` and ``stageK_pre`` taps sit.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.builtin.cifar_zoo._layers import conv1x1, conv3x3, init_weights, stage_taps

__all__ = ["WideBlock", "WideResNet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; a width or stride change projects the activated input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        # Not in place: in a group's first block its input is the previous group's
        # pre-activation tap.
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        identity = in_channels == out_channels and stride == 1
        self.shortcut = None if identity else conv1x1(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        # The identity path carries the raw sum; the projection sees the activated input.
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    """3x3 stem conv, three groups of wide blocks, final BN-ReLU, linear head."""

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a Wide ResNet has depth 6n + 4, not {depth}")
        blocks = (depth - 4) // 6
        self.stem = conv3x3(in_channels, 16)
        channels = 16
        for k in range(1, 4):
            width = 16 * 2 ** (k - 1) * widen
            layer = [WideBlock(channels, width, 1 if k == 1 else 2)]
            layer += [WideBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{k}", nn.Sequential(*layer))
            channels = width
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.avgpool(self.relu(self.bn(x)))))

    def feature_taps(self) -> dict[str, str]:
        # Groups 1 and 2 are activated by the first block of the following group.
        stages = [(f"layer{k + 1}.0.relu1", f"layer{k + 1}.0.relu1:in") for k in (1, 2)]
        return stage_taps("stem", [*stages, ("relu", "relu:in")])


def wrn_16_1(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-16-1: 2 pre-activation blocks per group, 16/32/64 channels."""
    return WideResNet(16, 1, num_classes, in_channels)


def wrn_16_2(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-16-2: 2 pre-activation blocks per group, 32/64/128 channels."""
    return WideResNet(16, 2, num_classes, in_channels)


def wrn_40_1(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-40-1: 6 pre-activation blocks per group, 16/32/64 channels."""
    return WideResNet(40, 1, num_classes, in_channels)


def wrn_40_2(num_classes: int, in_channels: int) -> WideResNet:
    """WRN-40-2: 6 pre-activation blocks per group, 32/64/128 channels."""
    return WideResNet(40, 2, num_classes, in_channels)
