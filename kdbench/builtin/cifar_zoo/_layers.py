"""Pieces shared by the CIFAR zoo families: conv shorthands, channel shuffle, init, taps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ChannelShuffle", "conv1x1", "conv3x3", "init_weights", "stage_taps"]


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, *, groups: int = 1, bias: bool = False
) -> nn.Conv2d:
    """3x3 convolution with padding 1, so stride alone sets the output resolution."""
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=bias
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, *, groups: int = 1) -> nn.Conv2d:
    """Pointwise convolution without bias (a BatchNorm always follows it in the zoo)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, groups=groups, bias=False)


def conv_bn_relu(conv: nn.Conv2d) -> nn.Sequential:
    """``conv`` -> BatchNorm -> ReLU: the zoo's stems and head convolutions."""
    return nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True))


class ChannelShuffle(nn.Module):
    """Interleave channel groups so the next grouped convolution mixes all of them."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def init_weights(model: nn.Module, *, linear_std: float | None = None) -> None:
    """He-normal (fan-out) convolutions and unit BatchNorms, the usual CIFAR recipe.

    ``linear_std`` also draws the classifier from N(0, std) with a zero bias, as the
    reference VGG and MobileNetV2 recipes do; otherwise PyTorch's default is kept.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)


def stage_taps(
    stem: str, stages: Sequence[tuple[str, str]], pool: str = "flatten"
) -> dict[str, str]:
    """The zoo's tap names: ``stem``, ``stageK``/``stageK_pre`` per (output, pre) pair, ``pool``."""
    taps = {"stem": stem}
    for k, (output, pre) in enumerate(stages, start=1):
        taps[f"stage{k}"] = output
        taps[f"stage{k}_pre"] = pre
    taps["pool"] = pool
    return taps


class StagedNet(nn.Module):
    """Shared body of the zoo's staged networks: ``stem``, ``<stage_prefix>1..N``, an
    optional ``head`` (``has_head``), average pool and linear classifier.

    Subclasses build the modules and set ``num_stages``. By default each stage's last
    block ends in an ``out_relu`` module, whose input is the stage's pre-activation.
    """

    num_stages: int
    stage_prefix = "stage"
    has_head = False

    def forward(self, x):
        x = self.stem(x)
        for k in range(1, self.num_stages + 1):
            x = getattr(self, f"{self.stage_prefix}{k}")(x)
        if self.has_head:
            x = self.head(x)
        return self.fc(self.flatten(self.avgpool(x)))

    def feature_taps(self) -> dict[str, str]:
        return last_block_taps(self, self.stage_prefix, self.num_stages)


def last_block_taps(model: nn.Module, prefix: str, num_stages: int) -> dict[str, str]:
    """Taps of ``stem`` + stages ``<prefix>1..N``, each ending in a block whose ``out_relu``
    input is the stage's pre-activation."""
    stages = []
    for k in range(1, num_stages + 1):
        last = len(getattr(model, f"{prefix}{k}")) - 1
        stages.append((f"{prefix}{k}", f"{prefix}{k}.{last}.out_relu:in"))
    return stage_taps("stem", stages)
