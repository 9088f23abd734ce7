# ruff: noqa
# Verbatim from docs/plugins.md at commit 925c2fc: the docs of the last release layout, the commit before the 0.2 layout moved
# kdbench/functional.py, features.py, identity.py and others into subpackages.
# Its Python blocks in order: a loss, a model and a dataset checked with the kit, taps across depths.
# tests/test_legacy_plugins.py runs it, unchanged, against today's kdbench.

import torch.nn.functional as F

from kdbench import DistillationLoss, LossInputs, Temperature
from kdbench.testing import check_loss


class SoftTargets(DistillationLoss):
    """CE + T^2 * KL(teacher || student): the plain KD term at temperature T."""

    def __init__(self, *, temperature: Temperature = 4.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, inputs: LossInputs):
        t = self.temperature
        log_q = F.log_softmax(inputs.student_logits / t, dim=1)
        p = F.softmax(inputs.teacher_logits.detach() / t, dim=1)  # detach: no teacher gradient
        return {
            "ce": F.cross_entropy(inputs.student_logits, inputs.targets),
            "kd": F.kl_div(log_q, p, reduction="batchmean") * t * t,
        }


terms = check_loss(SoftTargets, {"temperature": 2.0})
assert set(terms) == {"ce", "kd"}


from torch import nn

from kdbench import PositiveInt
from kdbench.testing import check_model


class Two(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stage2(self.stage1(x))))


def two(num_classes: int, in_channels: int, *, width: PositiveInt = 8) -> Two:
    """Two conv stages."""
    return Two(num_classes, in_channels, width)


shapes = check_model(two, taps={"stage1": "stage1", "stage2": "stage2", "pool": "pool"})
assert shapes == {"stage1": (8, 32, 32), "stage2": (16, 16, 16), "pool": (16,)}


import torch

from kdbench import DatasetSplits, Split
from kdbench.testing import check_dataset


def noise() -> DatasetSplits:
    """Random 8x8 grey images in two classes (a stand-in for real files)."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
        return Split(images, torch.randint(0, 2, (n,), generator=g))

    return DatasetSplits(split(32), split(8), classes=("a", "b"), mean=(0.5,), std=(0.29,))


assert check_dataset(noise).num_classes == 2


from kdbench import DistillationLoss, TapPair, Taps
from kdbench.functional import stage_taps


class LastStages(DistillationLoss):
    """Pairs the student's last stage with the teacher's, whatever their depths."""

    def required_features(self, available):
        student = stage_taps(getattr(available, "student", available))
        teacher = stage_taps(getattr(available, "teacher", available))
        return (TapPair(student[-1], teacher[-1]),)


taps = Taps(student=["stage1", "stage2", "pool"], teacher=["stage1", "stage2", "stage3", "pool"])
assert tuple(taps) == ("stage1", "stage2", "pool")  # the names both declare
assert LastStages().required_features(taps) == (TapPair("stage2", "stage3"),)
