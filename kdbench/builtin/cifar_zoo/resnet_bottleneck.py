"""ImageNet-style bottleneck ResNet fitted to 32x32 images.

The 7x7 stride-2 stem and its max-pool would leave a 1x1 map after four stages on
CIFAR, so the stem is a single 3x3 stride-1 conv; the four stages then run at
32/16/8/4 px. Module names are the reference ones (``conv1``/``bn1``, ``layerK.i``,
``shortcut``, ``linear``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdbench.builtin.cifar_zoo._layers import (
    STEM_RENAMES,
    StagedNet,
    conv1x1,
    conv3x3,
    init_weights,
)

__all__ = ["Bottleneck", "BottleneckResNet", "resnet50"]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, with a projection when needed."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()
        # Not in place, so the pre-activation tap on its input survives.
        self.out_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.out_relu(out + self.shortcut(x))


class BottleneckResNet(StagedNet):
    """3x3 stem, four bottleneck stages of 64/128/256/512 (x4 out) channels, linear head."""

    classifier_name = "linear"
    LEGACY_RENAMES = (*STEM_RENAMES, (r"^fc\.", "linear."))

    def __init__(self, blocks: Sequence[int], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self._build_stem(conv3x3(in_channels, 64))
        channels = 64
        for k, count in enumerate(blocks, start=1):
            width = 64 * 2 ** (k - 1)
            layer = [Bottleneck(channels, width, 1 if k == 1 else 2)]
            channels = width * Bottleneck.expansion
            layer += [Bottleneck(channels, width) for _ in range(count - 1)]
            self.add_module(f"layer{k}", nn.Sequential(*layer))
        self.num_stages = len(blocks)
        self._build_classifier(channels, num_classes)
        init_weights(self)


def resnet50(num_classes: int, in_channels: int) -> BottleneckResNet:
    """ResNet-50 with a 3x3 stem for 32x32 images: 3/4/6/3 bottleneck blocks."""
    return BottleneckResNet((3, 4, 6, 3), num_classes, in_channels)
