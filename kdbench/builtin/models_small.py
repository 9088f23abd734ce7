"""Small CNN and MLP families, sized for digits and Fashion-MNIST on a CPU.

Registered as both teachers and students. Each stage is a named module so feature
taps work through forward hooks (docs/models.md has their shapes):

- ``cnn``: ``stageK`` is stage K's output after its max-pool (the last stage has none),
  ``stageK_pre`` the input of its second ReLU (before the pool: twice the resolution of
  ``stageK`` except in the last stage), ``pool`` the flattened embedding.
- ``mlp``: ``stageK`` is hidden block K's output, ``pool`` the last one's (the
  classifier's input).
"""

from __future__ import annotations

from torch import nn

from kdbench import PositiveInt, hookimpl

__all__ = ["SmallCNN", "MLP", "cnn", "mlp"]


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stages, each doubling width and halving resolution, then a linear head."""

    def __init__(self, num_classes: int, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        stages, channels = [], in_channels
        for i in range(depth):
            out = width * 2**i
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(out, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(),
                    nn.MaxPool2d(2) if i < depth - 1 else nn.Identity(),
                )
            )
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stages(x)))


class MLP(nn.Module):
    """Flatten, then hidden layers of equal width with ReLU, then a linear head."""

    def __init__(self, num_classes: int, hidden: int, layers: int) -> None:
        super().__init__()
        # The input size is inferred on the first forward, so one MLP fits any image size.
        blocks = [nn.Sequential(nn.LazyLinear(hidden), nn.ReLU())]
        blocks += [nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()) for _ in range(layers - 1)]
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(*blocks)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.hidden(self.flatten(x)))


def cnn(
    num_classes: int, in_channels: int, *, width: PositiveInt = 16, depth: PositiveInt = 2
) -> SmallCNN:
    """Small CNN: `depth` conv stages starting at `width` channels."""
    return SmallCNN(num_classes, in_channels, width, depth)


def mlp(
    num_classes: int, in_channels: int, *, hidden: PositiveInt = 128, layers: PositiveInt = 1
) -> MLP:
    """MLP over flattened pixels: `layers` hidden layers of `hidden` units."""
    return MLP(num_classes, hidden, layers)


def _cnn_taps(depth: int) -> dict[str, str]:
    taps = {f"stage{i + 1}": f"stages.{i}" for i in range(depth)}
    taps |= {f"stage{i + 1}_pre": f"stages.{i}.5:in" for i in range(depth)}
    return taps | {"pool": "pool"}


def _mlp_taps(model: MLP) -> dict[str, str]:
    return {f"stage{i + 1}": f"hidden.{i}" for i in range(len(model.hidden))} | {"pool": "hidden"}


@hookimpl
def register_models(register):
    register("cnn", cnn, taps=lambda model: _cnn_taps(len(model.stages)))
    register("mlp", mlp, taps=_mlp_taps)
