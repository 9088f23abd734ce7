"""ShuffleNet V2 (Ma et al. 2018) at width 1.0 for 32x32 images, CIFAR layout.

A 1x1 stem keeps the full resolution; each of the three stages is a stride-2 down
unit then 3/7/3 basic units (116/232/464 channels), followed by a 1x1 head conv to
1024 channels. Module names are the reference ones (``conv1``/``bn1``, ``layerK.i``,
``conv2``/``bn2`` head, ``linear``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdbench.builtin.cifar_zoo._layers import (
    STEM_RENAMES,
    ChannelShuffle,
    StagedNet,
    conv1x1,
    conv3x3,
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
        # Left: conv1-bn1 (depthwise), conv2-bn2-ReLU.
        self.conv1 = conv3x3(in_channels, in_channels, 2, groups=in_channels)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = conv1x1(in_channels, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        # Right: conv3-bn3-ReLU, conv4-bn4 (depthwise), conv5-bn5-ReLU.
        self.conv3 = conv1x1(in_channels, mid)
        self.bn3 = nn.BatchNorm2d(mid)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = conv3x3(mid, mid, 2, groups=mid)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = conv1x1(mid, mid)
        self.bn5 = nn.BatchNorm2d(mid)
        self.relu5 = nn.ReLU(inplace=True)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.relu2(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.bn4(self.conv4(self.relu3(self.bn3(self.conv3(x)))))
        right = self.relu5(self.bn5(self.conv5(right)))
        return self.shuffle(torch.cat([left, right], 1))


_LEFT = ("conv1", "bn1", "conv2", "bn2")
_RIGHT = ((0, "conv3"), (1, "bn3"), (3, "conv4"), (4, "bn4"), (5, "conv5"), (6, "bn5"))


class ShuffleNetV2(StagedNet):
    """1x1 stem, three stages (down unit + basic units), 1x1 head conv, linear classifier."""

    has_head = True
    classifier_name = "linear"
    LEGACY_RENAMES = (
        *STEM_RENAMES,
        (r"^head\.0\.", "conv2."),
        (r"^head\.1\.", "bn2."),
        (r"^stage(\d+)\.", r"layer\1."),
        # The down unit's left and right Sequentials, indices of their conv/BN layers.
        *((rf"\.left\.{i}\.", f".{name}.") for i, name in enumerate(_LEFT)),
        *((rf"\.right\.{i}\.", f".{name}.") for i, name in _RIGHT),
        (r"^fc\.", "linear."),
    )

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
        self._build_stem(conv1x1(in_channels, channels))
        for k, (width, count) in enumerate(zip(widths, units, strict=True), start=1):
            blocks: list[nn.Module] = [DownUnit(channels, width)]
            blocks += [BasicUnit(width) for _ in range(count)]
            self.add_module(f"layer{k}", nn.Sequential(*blocks))
            channels = width
        self.num_stages = len(widths)
        self._build_head(conv1x1(channels, head))
        self._build_classifier(head, num_classes)


def shufflenet_v2(num_classes: int, in_channels: int) -> ShuffleNetV2:
    """ShuffleNet V2 at width 1.0: 3/7/3 basic units at 116/232/464 channels."""
    return ShuffleNetV2((116, 232, 464), (3, 7, 3), 1024, num_classes, in_channels)
