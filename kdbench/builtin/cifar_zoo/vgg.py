"""VGG with BatchNorm for 32x32 images (Simonyan and Zisserman 2015), CIFAR layout.

Five conv blocks separated by 2x2 max-pools, then global average pooling and one
linear layer instead of the 4096-wide classifier. Block 0 plays the stem; blocks 1-4
are the four stages. The pool between blocks 3 and 4 is only used on inputs of 64 px
or more, so blocks 3 and 4 share a 4x4 map on CIFAR. Module names are the reference
ones (``blockI.J``, ``classifier``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdbench.builtin.cifar_zoo._layers import (
    accept_legacy_layout,
    conv3x3,
    init_weights,
    stage_taps,
)

__all__ = ["VGG", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19"]

_CHANNELS = (64, 128, 256, 512, 512)


def _block(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        last = i == convs - 1
        layers += [
            conv3x3(in_channels, out_channels, bias=True),
            nn.BatchNorm2d(out_channels),
            # The block's last ReLU is not in place: its input is the pre-activation tap.
            nn.ReLU(inplace=not last),
        ]
        in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Five blocks of conv-BN-ReLU (``convs[i]`` convs in block i), average pool, linear head."""

    LEGACY_RENAMES = ((r"^fc\.", "classifier."),)

    def __init__(self, convs: Sequence[int], num_classes: int, in_channels: int) -> None:
        super().__init__()
        channels = in_channels
        for i, (count, width) in enumerate(zip(convs, _CHANNELS, strict=True)):
            self.add_module(f"block{i}", _block(channels, width, count))
            channels = width
        self.pool0 = nn.MaxPool2d(2)
        self.pool1 = nn.MaxPool2d(2)
        self.pool2 = nn.MaxPool2d(2)
        self.pool3 = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self, linear_std=0.01)
        accept_legacy_layout(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        large = x.shape[-2] >= 64
        x = self.pool0(self.block0(x))
        x = self.pool1(self.block1(x))
        x = self.pool2(self.block2(x))
        x = self.block3(x)
        if large:
            x = self.pool3(x)
        x = self.block4(x)
        return self.classifier(self.flatten(self.avgpool(x)))

    def feature_taps(self) -> dict[str, str]:
        stages = []
        for k in range(1, 5):
            last = len(getattr(self, f"block{k}")) - 1
            stages.append((f"block{k}", f"block{k}.{last}:in"))
        return stage_taps("block0", stages)


def vgg8(num_classes: int, in_channels: int) -> VGG:
    """VGG-8 with BatchNorm: one conv per block, 64 to 512 channels."""
    return VGG((1, 1, 1, 1, 1), num_classes, in_channels)


def vgg11(num_classes: int, in_channels: int) -> VGG:
    """VGG-11 with BatchNorm: 1/1/2/2/2 convs per block, 64 to 512 channels."""
    return VGG((1, 1, 2, 2, 2), num_classes, in_channels)


def vgg13(num_classes: int, in_channels: int) -> VGG:
    """VGG-13 with BatchNorm: two convs per block, 64 to 512 channels."""
    return VGG((2, 2, 2, 2, 2), num_classes, in_channels)


def vgg16(num_classes: int, in_channels: int) -> VGG:
    """VGG-16 with BatchNorm: 2/2/3/3/3 convs per block, 64 to 512 channels."""
    return VGG((2, 2, 3, 3, 3), num_classes, in_channels)


def vgg19(num_classes: int, in_channels: int) -> VGG:
    """VGG-19 with BatchNorm: 2/2/4/4/4 convs per block, 64 to 512 channels."""
    return VGG((2, 2, 4, 4, 4), num_classes, in_channels)
