"""The plugin module named by the ``kdbench`` entry point."""

from __future__ import annotations

import torch.nn.functional as F

from kdbench import DistillationLoss, LossInputs, hookimpl


class LogitMSE(DistillationLoss):
    """Logit matching (Ba & Caruana 2014): CE + beta * mean squared error to teacher logits."""

    def __init__(self, *, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, inputs: LossInputs):
        teacher = inputs.teacher_logits.detach()  # the teacher is not trained
        return {
            "ce": F.cross_entropy(inputs.student_logits, inputs.targets),
            "logit_mse": self.beta * F.mse_loss(inputs.student_logits, teacher),
        }


@hookimpl
def register_losses(register):
    register("logit_mse", LogitMSE)
