"""MobileNetV1 for ImageNet-sized inputs, laid out as mdistiller's ImageNet student.

mdistiller (``mdistiller/models/imagenet/mobilenetv1.py``) distils ResNet50 into this
network: a 3x3 stride-2 conv-BN-ReLU stem, then 13 depthwise-separable blocks (3x3
depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU) in ``model.1`` .. ``model.13``, the
average pool in ``model.14`` and the classifier ``fc``. Module paths, and so state-dict
keys, are theirs. One difference: the pool is adaptive (theirs is ``AvgPool2d(7)``,
the same at 224x224 inputs), so smaller images work too.

Taps: ``stage1`` .. ``stage4`` are the outputs of blocks 3, 5, 11 and 13 (the last
block of each resolution, at strides 4, 8, 16 and 32: mdistiller's four features after
their ReLU), ``stageK_pre`` the input of that block's closing ReLU (its ``preact_feats``;
the ReLU is not in place, so the hook sees the value before it), ``pool`` the pooled
embedding.
"""

from __future__ import annotations

from torch import nn

from kdbench import hookimpl

__all__ = ["MobileNetV1", "mobilenet_v1"]

# (output channels, stride) of the 13 depthwise-separable blocks
BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip
_STAGE_ENDS = (3, 5, 11, 13)  # the last block at each resolution
TAPS = {
    **{f"stage{k}": f"model.{block}" for k, block in enumerate(_STAGE_ENDS, start=1)},
    **{f"stage{k}_pre": f"model.{block}.5:in" for k, block in enumerate(_STAGE_ENDS, start=1)},
    "pool": "model.14",
}


def _conv_bn(inp: int, out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)
    )


def _conv_dw(inp: int, out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(inplace=True),
        nn.Conv2d(inp, out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(),  # not in place: stageK_pre reads its input
    )


class MobileNetV1(nn.Module):
    """Howard et al. 2017, width 1.0: 4.23 M parameters with 1000 classes."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        layers, channels = [_conv_bn(in_channels, 32, 2)], 32
        for out, stride in BLOCKS:
            layers.append(_conv_dw(channels, out, stride))
            channels = out
        self.model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.model(x).flatten(1))


def mobilenet_v1(num_classes: int, in_channels: int) -> MobileNetV1:
    """MobileNetV1 (mdistiller's ImageNet student; 4.23 M parameters for 1000 classes)."""
    return MobileNetV1(num_classes, in_channels)


@hookimpl
def register_models(register):
    register("mobilenet_v1", mobilenet_v1, taps=TAPS)
