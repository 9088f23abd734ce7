# ruff: noqa
# Verbatim from docs/losses.md at commit 79eed4c: the last docs that showed kdbench.features.FeatureTaps to plugin authors.
# The example distribution's src/my_loss_pkg/plugin.py.
# tests/test_legacy_plugins.py runs it, unchanged, against today's kdbench.

"""The mimic loss: a trained 1x1 connector and an MSE on the last stage."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from kdbench import ConfigError, DistillationLoss, LossContext, LossInputs, Weight, hookimpl
from kdbench.functional import stage_taps


class Mimic(DistillationLoss):
    """Mimic: ce*CE + weight*MSE(connector(last student stage), last teacher stage)."""

    def __init__(self, *, weight: Weight = 1.0, ce_weight: Weight = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.ce_weight = ce_weight

    def required_features(self, available):
        stages = stage_taps(available)
        if not stages:
            raise ConfigError(f"loss 'mimic' needs stage taps; shared taps: {list(available)}")
        return (stages[-1],)

    def setup(self, context: LossContext) -> None:
        (self.layer,) = context.student_feature_shapes
        s_channels = context.student_feature_shapes[self.layer][0]
        t_channels = context.teacher_feature_shapes[self.layer][0]
        self.connector = nn.Conv2d(s_channels, t_channels, kernel_size=1)  # extra parameters

    def forward(self, inputs: LossInputs):
        student = self.connector(inputs.student_features[self.layer].float())
        teacher = inputs.teacher_features[self.layer].detach().float()
        if student.shape[-2:] != teacher.shape[-2:]:
            student = F.adaptive_avg_pool2d(student, teacher.shape[-2:])
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "mimic": self.weight * F.mse_loss(student, teacher),
        }


@hookimpl
def register_losses(register):
    register("mimic", Mimic)
