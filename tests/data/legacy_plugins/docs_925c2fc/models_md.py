# ruff: noqa
# Verbatim from docs/models.md at commit 925c2fc: the docs of the last release layout, the commit before the 0.2 layout moved
# kdbench/functional.py, features.py, identity.py and others into subpackages.
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


from kdbench.testing import check_model

shapes = check_model(tiny, taps=TAPS)
assert shapes == {
    "stage1": (16, 32, 32),
    "stage1_pre": (16, 32, 32),
    "stage2": (32, 16, 16),
    "stage2_pre": (32, 16, 16),
    "pool": (32,),
}
