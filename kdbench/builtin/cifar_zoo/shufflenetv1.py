"""ShuffleNet V1 (Zhang et al. 2018) for 32x32 images, 3 groups, CIFAR layout.

A 1x1 stem keeps the full resolution; three stages of 4/8/4 units at 240/480/960
channels each start with a stride-2 unit whose output is concatenated with an
average-pooled shortcut. Module names are the reference ones (``conv1``/``bn1``,
``layerK.i``, ``linear``).
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

__all__ = ["ShuffleNetV1", "ShuffleUnit", "shufflenet_v1"]


class ShuffleUnit(nn.Module):
    """Grouped 1x1, shuffle, depthwise 3x3, grouped 1x1, then the shortcut joins.

    The shortcut is added, or, in a striding unit, average-pooled and concatenated.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, groups: int, first_groups: int
    ) -> None:
        super().__init__()
        self.concat = stride == 2
        # A striding unit only computes the channels its pooled shortcut does not bring.
        branch = out_channels - in_channels if self.concat else out_channels
        mid = branch // 4
        self.conv1 = conv1x1(in_channels, mid, groups=first_groups)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU(inplace=True)
        self.shuffle = ChannelShuffle(first_groups)
        self.conv2 = conv3x3(mid, mid, stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(mid, branch, groups=groups)
        self.bn3 = nn.BatchNorm2d(branch)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if self.concat else nn.Identity()
        # Not in place: its input is the stage's pre-activation tap.
        self.out_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.relu1(self.bn1(self.conv1(x))))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        return self.out_relu(torch.cat([out, res], 1) if self.concat else out + res)


class ShuffleNetV1(StagedNet):
    """1x1 stem, three stages of shuffle units, average pool, linear head."""

    classifier_name = "linear"
    LEGACY_RENAMES = (*STEM_RENAMES, (r"^stage(\d+)\.", r"layer\1."), (r"^fc\.", "linear."))

    def __init__(
        self,
        widths: Sequence[int],
        units: Sequence[int],
        groups: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        channels = 24
        self._build_stem(conv1x1(in_channels, channels))
        for k, (width, count) in enumerate(zip(widths, units, strict=True), start=1):
            blocks = []
            for i in range(count):
                # The first 1x1 sees only the 24 stem channels, too few to split into groups.
                first_groups = 1 if k == 1 and i == 0 else groups
                blocks.append(
                    ShuffleUnit(channels, width, 2 if i == 0 else 1, groups, first_groups)
                )
                channels = width
            self.add_module(f"layer{k}", nn.Sequential(*blocks))
        self.num_stages = len(widths)
        self._build_classifier(channels, num_classes)


def shufflenet_v1(num_classes: int, in_channels: int) -> ShuffleNetV1:
    """ShuffleNet V1, 3 groups: 4/8/4 units at 240/480/960 channels."""
    return ShuffleNetV1((240, 480, 960), (4, 8, 4), 3, num_classes, in_channels)
