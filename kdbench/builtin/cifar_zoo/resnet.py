"""CIFAR ResNets (He et al. 2016, section 4.2): three stages of basic blocks at 32/16/8 px.

Depth ``6n + 2`` gives ``n`` blocks per stage. The ``x4`` variants widen every stage
fourfold (32-channel stem, 64/128/256-channel stages), the usual strong teachers of
CIFAR distillation benchmarks. Module names are the reference ones (``conv1``/``bn1``
stem, ``layerK.i``, ``downsample`` projections, ``fc``), so published teacher
state dicts load as they are.
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

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "resnet8",
    "resnet8x4",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet32x4",
    "resnet44",
    "resnet56",
    "resnet110",
]


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a shortcut; the closing ReLU is a module of its own for the taps."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                conv1x1(in_channels, channels, stride), nn.BatchNorm2d(channels)
            )
        else:
            self.downsample = nn.Identity()
        # Not in place: a hook on its input must still see the pre-activation afterwards.
        self.out_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.out_relu(out + self.downsample(x))


class CifarResNet(StagedNet):
    """3x3 stem, three stages of basic blocks (the last two halve the resolution), linear head."""

    LEGACY_RENAMES = (*STEM_RENAMES, (r"\.shortcut\.", ".downsample."))

    def __init__(
        self, depth: int, widths: Sequence[int], num_classes: int, in_channels: int
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2, not {depth}")
        blocks = (depth - 2) // 6
        stem_width, *stage_widths = widths
        self._build_stem(conv3x3(in_channels, stem_width))
        channels = stem_width
        for k, width in enumerate(stage_widths, start=1):
            stride = 1 if k == 1 else 2
            layer = [BasicBlock(channels, width, stride)]
            layer += [BasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{k}", nn.Sequential(*layer))
            channels = width
        self.num_stages = len(stage_widths)
        self._build_classifier(channels, num_classes)
        init_weights(self)


_WIDTHS = (16, 16, 32, 64)
_WIDTHS_X4 = (32, 64, 128, 256)


def resnet8(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-8: 1 basic block per stage, 16/32/64 channels."""
    return CifarResNet(8, _WIDTHS, num_classes, in_channels)


def resnet14(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-14: 2 basic blocks per stage, 16/32/64 channels."""
    return CifarResNet(14, _WIDTHS, num_classes, in_channels)


def resnet20(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-20: 3 basic blocks per stage, 16/32/64 channels."""
    return CifarResNet(20, _WIDTHS, num_classes, in_channels)


def resnet32(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-32: 5 basic blocks per stage, 16/32/64 channels."""
    return CifarResNet(32, _WIDTHS, num_classes, in_channels)


def resnet44(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-44: 7 basic blocks per stage, 16/32/64 channels."""
    return CifarResNet(44, _WIDTHS, num_classes, in_channels)


def resnet56(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-56: 9 basic blocks per stage, 16/32/64 channels."""
    return CifarResNet(56, _WIDTHS, num_classes, in_channels)


def resnet110(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-110: 18 basic blocks per stage, 16/32/64 channels."""
    return CifarResNet(110, _WIDTHS, num_classes, in_channels)


def resnet8x4(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-8 four times wider: 1 basic block per stage, 64/128/256 channels."""
    return CifarResNet(8, _WIDTHS_X4, num_classes, in_channels)


def resnet32x4(num_classes: int, in_channels: int) -> CifarResNet:
    """CIFAR ResNet-32 four times wider: 5 basic blocks per stage, 64/128/256 channels."""
    return CifarResNet(32, _WIDTHS_X4, num_classes, in_channels)
