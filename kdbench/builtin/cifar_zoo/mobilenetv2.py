"""MobileNetV2 (Sandler et al. 2018) at half width, the student CIFAR distillation uses.

Inverted residuals (1x1 expand, 3x3 depthwise, linear 1x1 project) with the standard
settings scaled by 0.5, a stride-2 stem, and a 1280-channel head. The seven bottleneck
rows are grouped into four stages ending at 16, 8, 4 and 2 px for a 32x32 input.
Every block keeps its 1x1 expansion, the first one included (expansion 1 there).
Module names are the reference ones (``conv1`` stem, ``blocks.<row>.<i>``, ``conv2``
head, ``classifier.0``), so published teacher state dicts load as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from kdbench.builtin.cifar_zoo._layers import (
    accept_legacy_layout,
    conv1x1,
    conv3x3,
    conv_bn_relu,
    init_weights,
    renamed,
    stage_taps,
)

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenetv2_half"]

# (expansion, channels at width 1, blocks, stride of the first block) per bottleneck row;
# expansion None takes the network's expansion ratio.
_ROWS = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)
# Which rows make up each stage.
_STAGES = ((0, 1), (2,), (3, 4), (5, 6))


class InvertedResidual(nn.Module):
    """Expand, depthwise, project linearly; residual when shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            conv1x1(in_channels, hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            conv3x3(hidden, hidden, stride, groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            conv1x1(hidden, out_channels),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """Stride-2 stem, seven rows of inverted residuals, 1x1 head conv, linear classifier.

    ``stages`` groups the rows into the stages the feature taps name.
    """

    LEGACY_RENAMES = ((r"^stem\.", "conv1."), (r"^head\.", "conv2."), (r"^fc\.", "classifier.0."))

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        *,
        width: float,
        expansion: int,
        stages: Sequence[Sequence[int]] = _STAGES,
    ) -> None:
        super().__init__()
        channels = int(32 * width)
        self.conv1 = conv_bn_relu(conv3x3(in_channels, channels, 2))
        rows = []
        for t, c, n, s in _ROWS:
            out = int(c * width)
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(channels, out, s if i == 0 else 1, t or expansion))
                channels = out
            rows.append(nn.Sequential(*blocks))
        self.blocks = nn.ModuleList(rows)
        self.stages = tuple(tuple(group) for group in stages)
        head = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = conv_bn_relu(conv1x1(channels, head))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(head, num_classes))
        init_weights(self, linear_std=0.01)
        accept_legacy_layout(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for row in self.blocks:
            x = row(x)
        return self.classifier(self.flatten(self.avgpool(self.conv2(x))))

    def feature_taps(self) -> dict[str, str]:
        # Stages end in a linear projection: there is no ReLU, so the output already is
        # the pre-activation and both taps name it.
        stages = [(f"blocks.{rows[-1]}", f"blocks.{rows[-1]}") for rows in self.stages]
        return stage_taps("conv1", stages)

    def legacy_key(self, key: str) -> str:
        """Reference name of a key of the first layout, whose ``stageK.i`` numbered the
        blocks of each stage's rows consecutively."""
        if match := re.match(r"stage(\d+)\.(\d+)\.", key):
            stage, index = int(match[1]), int(match[2])
            for row in self.stages[stage - 1]:
                if index < len(self.blocks[row]):
                    return f"blocks.{row}.{index}.{key[match.end() :]}"
                index -= len(self.blocks[row])
        return renamed(self.LEGACY_RENAMES, key)


def mobilenetv2_half(num_classes: int, in_channels: int) -> MobileNetV2:
    """MobileNetV2 at width 0.5, expansion 6: the small CIFAR distillation student."""
    return MobileNetV2(num_classes, in_channels, width=0.5, expansion=6)
