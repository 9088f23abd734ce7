"""torchvision classification models, adapted to the dataset's classes and channels.

The first convolution is rebuilt for ``in_channels`` other than 3 and the classifier
for ``num_classes``. ``pretrained = true`` loads torchvision's ImageNet weights (from its
cache, or downloaded where a network exists) before the head is replaced, so the
teacher is then fine-tuned on the benchmark's data rather than used with ImageNet's
1000-class head.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision
from torch import nn

from kdbench import KdbenchError, hookimpl

# name -> (taps, path of the first conv, path of the final linear layer)
_MODELS: dict[str, tuple[dict[str, str], str, str]] = {
    **{
        name: (
            {f"stage{i}": f"layer{i}" for i in range(1, 5)} | {"pool": "avgpool"},
            "conv1",
            "fc",
        )
        for name in ("resnet18", "resnet34", "resnet50")
    },
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


def build(name: str, num_classes: int, in_channels: int, *, pretrained: bool = False) -> nn.Module:
    """torchvision `name` with its stem and head fitted to the dataset."""
    _, stem_path, head_path = _MODELS[name]
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
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
