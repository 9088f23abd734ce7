"""Pieces shared by the CIFAR zoo families: conv shorthands, channel shuffle, init, taps."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ChannelShuffle",
    "StagedNet",
    "accept_legacy_layout",
    "conv1x1",
    "conv3x3",
    "conv_bn_relu",
    "init_weights",
    "renamed",
    "stage_taps",
]


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
    """Shared body of the zoo's staged networks, in the reference module names.

    ``conv1``-``bn1``-``relu`` stem, stages ``layer1..N``, an optional ``conv2``-``bn2``-
    ``relu2`` head (``has_head``), average pool and the linear classifier, named
    ``classifier_name`` (``fc`` or ``linear``, as the reference names it). Subclasses
    call :meth:`_build_stem`, add the stages, call :meth:`_build_head` (if any) and
    :meth:`_build_classifier` in that order (it is the state-dict order), and set
    ``num_stages``. Each stage's last block ends in an ``out_relu`` module, whose input
    is the stage's pre-activation. Files of the first zoo layout load through the
    subclass's ``LEGACY_RENAMES``.
    """

    num_stages: int
    classifier_name = "fc"
    has_head = False

    def __init__(self) -> None:
        super().__init__()
        accept_legacy_layout(self)

    def _build_stem(self, conv: nn.Conv2d) -> None:
        self.conv1 = conv
        self.bn1 = nn.BatchNorm2d(conv.out_channels)
        self.relu = nn.ReLU(inplace=True)

    def _build_head(self, conv: nn.Conv2d) -> None:
        self.conv2 = conv
        self.bn2 = nn.BatchNorm2d(conv.out_channels)
        self.relu2 = nn.ReLU(inplace=True)

    def _build_classifier(self, in_features: int, num_classes: int) -> None:
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.add_module(self.classifier_name, nn.Linear(in_features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for k in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{k}")(x)
        if self.has_head:
            x = self.relu2(self.bn2(self.conv2(x)))
        return getattr(self, self.classifier_name)(self.flatten(self.avgpool(x)))

    def feature_taps(self) -> dict[str, str]:
        stages = []
        for k in range(1, self.num_stages + 1):
            last = len(getattr(self, f"layer{k}")) - 1
            stages.append((f"layer{k}", f"layer{k}.{last}.out_relu:in"))
        return stage_taps("relu", stages)


# Module names of kdbench's first zoo layout -> reference names: (regex, replacement)
# pairs applied in order; each family lists its own in ``LEGACY_RENAMES``.
Renames = tuple[tuple[str, str], ...]
STEM_RENAMES: Renames = ((r"^stem\.0\.", "conv1."), (r"^stem\.1\.", "bn1."))


def accept_legacy_layout(model: nn.Module) -> None:
    """Let ``model.load_state_dict`` also take weights saved in kdbench's first zoo layout.

    Those files hold the same tensors in the same order under other module names; the
    model's ``legacy_key(key)`` method, or else its class's ``LEGACY_RENAMES``, gives
    each old key's reference name. Keys the model has are left alone, so files in the
    reference layout load as they are.
    """
    model.register_load_state_dict_pre_hook(_rename_legacy_keys)


def renamed(renames: Renames, key: str) -> str:
    """``key`` with every (regex, replacement) of ``renames`` applied in order."""
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def _rename_legacy_keys(module: nn.Module, state_dict: dict, prefix: str, *_args) -> None:
    own = set(module.state_dict(keep_vars=True))
    for key in [k for k in state_dict if k.startswith(prefix)]:
        local = key[len(prefix) :]
        if local in own:
            continue
        if hasattr(module, "legacy_key"):
            new = module.legacy_key(local)
        else:
            new = renamed(getattr(module, "LEGACY_RENAMES", ()), local)
        if new != local:
            state_dict[prefix + new] = state_dict.pop(key)
