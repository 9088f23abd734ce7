"""torchvision classification models, adapted to the dataset's classes and channels.

The first convolution is rebuilt for ``in_channels`` other than 3 and the classifier
for ``num_classes``. ``pretrained = true`` loads torchvision's ImageNet weights (from its
cache, or downloaded where a network exists) before the head is replaced, so the
teacher is then fine-tuned on the benchmark's data rather than used with ImageNet's
1000-class head.

The ResNets are torchvision's ``ResNet`` built from its own blocks, with one change: a
block's closing ReLU (applied in ``forward`` after the residual add) is a module of its
own, ``out_relu``, not in place, so ``stageK_pre`` can read its input, the
pre-activation mdistiller's ImageNet ResNets return as ``preact_feats``. The function,
parameters and state dict are torchvision's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from kdbench import KdbenchError, hookimpl


class _OutReLU:
    """Mixin for torchvision's blocks: the closing ReLU as a module, ``out_relu``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.out_relu = nn.ReLU()  # not in place: stageK_pre reads its input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.out_relu(self.residual(x) + identity)


class _BasicBlock(_OutReLU, BasicBlock):
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class _Bottleneck(_OutReLU, Bottleneck):
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


# name -> (block, blocks per stage), torchvision's resnet18/34/50
_RESNETS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (_BasicBlock, [2, 2, 2, 2]),
    "resnet34": (_BasicBlock, [3, 4, 6, 3]),
    "resnet50": (_Bottleneck, [3, 4, 6, 3]),
}


def _resnet_taps(blocks: list[int]) -> dict[str, str]:
    """``stageK`` = ``layerK``; ``stageK_pre`` = the input of its last block's ``out_relu``."""
    taps = {}
    for k, count in enumerate(blocks, start=1):
        taps[f"stage{k}"] = f"layer{k}"
        taps[f"stage{k}_pre"] = f"layer{k}.{count - 1}.out_relu:in"
    return taps | {"pool": "avgpool"}


# name -> (taps, path of the first conv, path of the final linear layer)
_MODELS: dict[str, tuple[dict[str, str], str, str]] = {
    **{name: (_resnet_taps(blocks), "conv1", "fc") for name, (_, blocks) in _RESNETS.items()},
    "mobilenet_v2": (
        {
            "stage1": "features.3",
            "stage2": "features.6",
            "stage3": "features.13",
            "stage4": "features.18",
        },
        "features.0.0",
        "classifier.1",
    ),
    "mobilenet_v3_small": (
        {
            "stage1": "features.1",
            "stage2": "features.3",
            "stage3": "features.8",
            "stage4": "features.12",
        },
        "features.0.0",
        "classifier.3",
    ),
}


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def _torchvision_model(name: str, pretrained: bool) -> nn.Module:
    """torchvision's ``name`` with 1000 classes, its ImageNet weights if ``pretrained``."""
    if name not in _RESNETS:
        return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
    model = ResNet(*_RESNETS[name])
    if pretrained:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        model.load_state_dict(weights.get_state_dict(progress=True, check_hash=True))
    return model


def build(name: str, num_classes: int, in_channels: int, *, pretrained: bool = False) -> nn.Module:
    """torchvision `name` with its stem and head fitted to the dataset."""
    _, stem_path, head_path = _MODELS[name]
    try:
        model = _torchvision_model(name, pretrained)
    except Exception as exc:  # noqa: BLE001 - offline download failures have many types
        raise KdbenchError(
            f"could not load pretrained weights for torchvision '{name}': {exc}. Offline, put "
            f"the weights file in torch's hub cache (TORCH_HOME/hub/checkpoints) or give the "
            f"teacher a local checkpoint instead."
        ) from exc
    if in_channels != 3:
        conv: nn.Conv2d = model.get_submodule(stem_path)
        _set_module(
            model,
            stem_path,
            nn.Conv2d(
                in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                bias=conv.bias is not None,
            ),
        )
    head: nn.Linear = model.get_submodule(head_path)
    _set_module(model, head_path, nn.Linear(head.in_features, num_classes))
    return model


def _factory(name: str) -> Callable[..., nn.Module]:
    """``build`` for one model: a plain function, so its parameters' annotations resolve."""

    def factory(num_classes: int, in_channels: int, *, pretrained: bool = False) -> nn.Module:
        return build(name, num_classes, in_channels, pretrained=pretrained)

    factory.__doc__ = f"torchvision {name}, stem and classifier fitted to the dataset."
    factory.__qualname__ = factory.__name__ = f"tv_{name}"
    return factory


@hookimpl
def register_models(register):
    for name, (taps, _, _) in _MODELS.items():
        register(f"tv/{name}", _factory(name), taps=taps)
