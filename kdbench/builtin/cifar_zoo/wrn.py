"""Wide ResNets (Zagoruyko and Komodakis 2016): pre-activation blocks, three groups.

WRN-d-k has ``(d - 4) / 6`` blocks per group and 16k/32k/64k channels. Being
pre-activation, a group's output is a raw residual sum, normalised and activated only
by the next group's first block (or by the head after the last group). Module names
are the reference ones (``conv1`` stem, ``blockK.layer.i``, ``convShortcut``, ``bn1``
head, ``fc``), so published teacher state dicts load as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.builtin.cifar_zoo._layers import (
    accept_legacy_layout,
    conv1x1,
    conv3x3,
    init_weights,
    stage_taps,
)

__all__ = ["BlockGroup", "WideBlock", "WideResNet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; a width or stride change projects the activated input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        # Not in place: in a group's first block its input is the previous group's
        # stage tap and the BatchNorm output the pre-activation tap.
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        identity = in_channels == out_channels and stride == 1
        self.convShortcut = None if identity else conv1x1(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        # The identity path carries the raw sum; the projection sees the activated input.
        return out + (x if self.convShortcut is None else self.convShortcut(act))


class BlockGroup(nn.Module):
    """One group of wide blocks, held as ``layer`` like the reference's block groups."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, stride: int) -> None:
        super().__init__()
        layer = [WideBlock(in_channels, out_channels, stride)]
        layer += [WideBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        self.layer = nn.Sequential(*layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """3x3 stem conv, three groups of wide blocks, final BN-ReLU, linear head."""

    LEGACY_RENAMES = (
        (r"^stem\.", "conv1."),
        (r"^layer(\d+)\.", r"block\1.layer."),
        (r"\.shortcut\.", ".convShortcut."),
        (r"^bn\.", "bn1."),
    )

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a Wide ResNet has depth 6n + 4, not {depth}")
        blocks = (depth - 4) // 6
        self.conv1 = conv3x3(in_channels, 16)
        channels = 16
        for k in range(1, 4):
            width = 16 * 2 ** (k - 1) * widen
            self.add_module(f"block{k}", BlockGroup(channels, width, blocks, 1 if k == 1 else 2))
            channels = width
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)
        nn.init.zeros_(self.fc.bias)
        accept_legacy_layout(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.flatten(self.avgpool(self.relu(self.bn1(x)))))

    def feature_taps(self) -> dict[str, str]:
        # stageK is the raw group output, as the reference's feature list has it. Groups
        # 1 and 2 are normalised and activated by the next group's first block, group 3
        # by the head: stageK_pre is that BatchNorm's output, stageK_act the ReLU's.
        activations = ["block2.layer.0.relu1", "block3.layer.0.relu1", "relu"]
        stages = [(f"block{k}", f"{act}:in") for k, act in enumerate(activations, start=1)]
        taps = stage_taps("conv1", stages)
        taps |= {f"stage{k}_act": act for k, act in enumerate(activations, start=1)}
        return taps


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
