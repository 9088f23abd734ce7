# ruff: noqa
# Verbatim from docs/models.md at commit 79eed4c: the last docs that showed kdbench.features.FeatureTaps to plugin authors.
# Its Python blocks in order: a model plugin module, then how the page checked it.
# tests/test_legacy_plugins.py runs it, unchanged, against today's kdbench.

{"stage2": "layer2", "stage2_pre": "layer2.4.out_relu:in"}


from torch import nn

from kdbench import hookimpl


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),  # not in place: stage1_pre reads its input
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.stage2(self.stage1(x)))))


def tiny(num_classes: int, in_channels: int, *, width: int = 16) -> TinyNet:
    """Two conv stages of `width` and 2 x `width` channels."""
    return TinyNet(num_classes, in_channels, width)


TAPS = {
    "stage1": "stage1",
    "stage1_pre": "stage1.2:in",
    "stage2": "stage2",
    "stage2_pre": "stage2.2:in",
    "pool": "flatten",
}


@hookimpl
def register_models(register):
    register("tiny", tiny, taps=TAPS)


import torch
from kdbench.features import FeatureTaps

model = tiny(num_classes=10, in_channels=3)
with FeatureTaps(model, TAPS, TAPS) as taps:
    model(torch.randn(2, 3, 32, 32))
print({name: tuple(t.shape) for name, t in taps.pop().items()})
