"""The CIFAR knowledge-distillation model zoo: the architectures CIFAR-100 KD papers compare.

ResNets (CIFAR and bottleneck), Wide ResNets, VGG with BatchNorm, half-width
MobileNetV2 and ShuffleNet V1/V2, each registered under its usual benchmark name as
both teacher and student. Module names, and so state-dict keys, are RepDistiller's, so
its published CIFAR-100 teachers load unchanged. Every model declares the same kind of
feature taps, the reference's ``model(x, is_feat=True)`` list: ``stem``,
``stage1``..``stageN`` (stage outputs: post-activation, for Wide ResNets the raw group
sums), ``stageK_pre`` (the matching pre-activations) and ``pool`` (the embedding the
classifier sees); see ``docs/models.md`` for their shapes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from kdbench import hookimpl
from kdbench.builtin.cifar_zoo import (
    mobilenetv2,
    resnet,
    resnet_bottleneck,
    shufflenetv1,
    shufflenetv2,
    vgg,
    wrn,
)

__all__ = ["MODELS", "feature_taps", "register_students", "register_teachers"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet8": resnet.resnet8,
    "resnet14": resnet.resnet14,
    "resnet20": resnet.resnet20,
    "resnet32": resnet.resnet32,
    "resnet44": resnet.resnet44,
    "resnet56": resnet.resnet56,
    "resnet110": resnet.resnet110,
    "resnet8x4": resnet.resnet8x4,
    "resnet32x4": resnet.resnet32x4,
    "ResNet50": resnet_bottleneck.resnet50,
    "wrn_16_1": wrn.wrn_16_1,
    "wrn_16_2": wrn.wrn_16_2,
    "wrn_40_1": wrn.wrn_40_1,
    "wrn_40_2": wrn.wrn_40_2,
    "vgg8": vgg.vgg8,
    "vgg11": vgg.vgg11,
    "vgg13": vgg.vgg13,
    "vgg16": vgg.vgg16,
    "vgg19": vgg.vgg19,
    "MobileNetV2": mobilenetv2.mobilenetv2_half,
    "ShuffleV1": shufflenetv1.shufflenet_v1,
    "ShuffleV2": shufflenetv2.shufflenet_v2,
}


def feature_taps(model: nn.Module) -> dict[str, str]:
    """Tap name -> module path of a built zoo model (the paths depend on its depth)."""
    return model.feature_taps()


@hookimpl
def register_models(register):
    for name, factory in MODELS.items():
        register(name, factory, taps=feature_taps)
