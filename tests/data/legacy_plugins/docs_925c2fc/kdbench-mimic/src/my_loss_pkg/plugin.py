# ruff: noqa
# Verbatim from docs/losses.md at commit 925c2fc: the docs of the last release layout, the commit before the 0.2 layout moved
# kdbench/functional.py, features.py, identity.py and others into subpackages.
# The example distribution's src/my_loss_pkg/plugin.py.
# tests/test_legacy_plugins.py runs it, unchanged, against today's kdbench.

"""The mimic loss: a trained 1x1 connector and an MSE between the last stages."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from kdbench import ConfigError, DistillationLoss, LossContext, LossInputs, TapPair, Weight
from kdbench import hookimpl
from kdbench.functional import stage_taps


class Mimic(DistillationLoss):
    """Mimic: ce*CE + weight*MSE(connector(last student stage), last teacher stage)."""

    def __init__(self, *, weight: Weight = 1.0, ce_weight: Weight = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.ce_weight = ce_weight

    def required_features(self, available):
        # Each network's own last stage: with a 3-stage teacher and a 2-stage student
        # the shared name "stage2" would be the teacher's middle stage.
        student = stage_taps(getattr(available, "student", available))
        teacher = stage_taps(getattr(available, "teacher", available))
        if not student or not teacher:
            raise ConfigError(f"loss 'mimic' needs stage taps; shared taps: {list(available)}")
        self.pair = TapPair(student[-1], teacher[-1])
        return (self.pair,)

    def setup(self, context: LossContext) -> None:
        s_channels = context.student_feature_shapes[self.pair.student][0]
        t_channels = context.teacher_feature_shapes[self.pair.teacher][0]
        self.connector = nn.Conv2d(s_channels, t_channels, kernel_size=1)  # extra parameters

    def forward(self, inputs: LossInputs):
        student = self.connector(inputs.student_features[self.pair.student].float())
        teacher = inputs.teacher_features[self.pair.teacher].detach().float()
        if student.shape[-2:] != teacher.shape[-2:]:
            student = F.adaptive_avg_pool2d(student, teacher.shape[-2:])
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "mimic": self.weight * F.mse_loss(student, teacher),
        }


@hookimpl
def register_losses(register):
    register("mimic", Mimic)
