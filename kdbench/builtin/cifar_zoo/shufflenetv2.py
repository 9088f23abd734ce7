"""ShuffleNet V2 (Ma et al. 2018) at width 1.0 for 32x32 images, CIFAR layout.

A 1x1 stem keeps the full resolution; each of the three stages is a stride-2 down
unit then 3/7/3 basic units (116/232/464 channels), followed by a 1x1 head conv to
1024 channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdbench.builtin.cifar_zoo._layers import (
    ChannelShuffle,
    StagedNet,
    conv1x1,
    conv3x3,
    conv_bn_relu,
)

__all__ = ["BasicUnit", "DownUnit", "ShuffleNetV2", "shufflenet_v2"]


class BasicUnit(nn.Module):
    """Split the channels; half pass through, half go 1x1, depthwise 3x3, 1x1; concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.conv1 = conv1x1(self.half, self.half)
        self.bn1 = nn.BatchNorm2d(self.half)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(self.half, self.half, groups=self.half)
        self.bn2 = nn.BatchNorm2d(self.half)
        self.conv3 = conv1x1(self.half, self.half)
        self.bn3 = nn.BatchNorm2d(self.half)
        self.shuffle = ChannelShuffle(2)
        # The branch's closing ReLU runs after concat and shuffle, over all channels. The
        # passed-through half already comes out of a ReLU, so this is the same function
        # (and gradient), and its input is a full-width pre-activation for the tap.
        # Not in place, so that tap survives.
        self.out_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, branch = x[:, : x.shape[1] - self.half], x[:, x.shape[1] - self.half :]
        branch = self.relu1(self.bn1(self.conv1(branch)))
        branch = self.bn3(self.conv3(self.bn2(self.conv2(branch))))
        return self.out_relu(self.shuffle(torch.cat([kept, branch], 1)))


class DownUnit(nn.Module):
    """Both halves stride 2: depthwise then 1x1 on the left, 1x1-depthwise-1x1 on the right."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.left = nn.Sequential(
            conv3x3(in_channels, in_channels, 2, groups=in_channels),
            nn.BatchNorm2d(in_channels),
            conv1x1(in_channels, mid),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )
        self.right = nn.Sequential(
            conv1x1(in_channels, mid),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            conv3x3(mid, mid, 2, groups=mid),
            nn.BatchNorm2d(mid),
            conv1x1(mid, mid),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(torch.cat([self.left(x), self.right(x)], 1))


class ShuffleNetV2(StagedNet):
    """1x1 stem, three stages (down unit + basic units), 1x1 head conv, linear classifier."""

    has_head = True

    def __init__(
        self,
        widths: Sequence[int],
        units: Sequence[int],
        head: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        channels = 24
        self.stem = conv_bn_relu(conv1x1(in_channels, channels))
        for k, (width, count) in enumerate(zip(widths, units, strict=True), start=1):
            blocks: list[nn.Module] = [DownUnit(channels, width)]
            blocks += [BasicUnit(width) for _ in range(count)]
            self.add_module(f"stage{k}", nn.Sequential(*blocks))
            channels = width
        self.num_stages = len(widths)
        self.head = conv_bn_relu(conv1x1(channels, head))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(head, num_classes)


def shufflenet_v2(num_classes: int, in_channels: int) -> ShuffleNetV2:
    """ShuffleNet V2 at width 1.0: 3/7/3 basic units at 116/232/464 channels."""
    return ShuffleNetV2((116, 232, 464), (3, 7, 3), 1024, num_classes, in_channels)
