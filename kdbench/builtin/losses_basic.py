"""The baseline (defined in the core), Hinton's KD, and the source article's losses done right.

The article these come from writes a "soft-label cross-entropy" and a "temperature-scaled
cross-entropy". What it means is implemented here; what it wrote is not (see
``docs/losses.md``): its KL term used ``reduction="mean"`` and no ``T^2``, applied the
temperature to probabilities instead of logits, and claimed a smaller temperature
smooths the distribution (a larger one does).
"""

from __future__ import annotations

import torch.nn.functional as F

from kdbench import DistillationLoss, LossInputs, Probability, Temperature, hookimpl
from kdbench.core.functional import kd_kl, soft_cross_entropy
from kdbench.core.losses import CrossEntropy

__all__ = ["CrossEntropy", "KD", "SoftLabelCE", "TemperatureCE"]


class KD(DistillationLoss):
    """KD (Hinton et al. 2015): (1-alpha)*CE + alpha*T^2*KL(p_t^T || p_s^T), batch mean."""

    def __init__(self, *, temperature: Temperature = 4.0, alpha: Probability = 0.9) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha

    def forward(self, inputs: LossInputs):
        return {
            "ce": (1 - self.alpha) * F.cross_entropy(inputs.student_logits, inputs.targets),
            "kd": self.alpha
            * kd_kl(inputs.student_logits, inputs.teacher_logits, self.temperature),
        }


class SoftLabelCE(DistillationLoss):
    """Soft-label CE (the article's loss, corrected): (1-alpha)*CE(y) + alpha*H(p_t, p_s).

    The teacher's probabilities at temperature 1 are the soft labels. The article's
    formula weighted the student's log-probabilities by (1 - y), which no paper does.
    """

    def __init__(self, *, alpha: Probability = 0.5) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, inputs: LossInputs):
        soft = inputs.teacher_logits.detach().softmax(dim=1)
        return {
            "ce": (1 - self.alpha) * F.cross_entropy(inputs.student_logits, inputs.targets),
            "soft_ce": self.alpha * soft_cross_entropy(inputs.student_logits, soft),
        }


class TemperatureCE(DistillationLoss):
    """Temperature-scaled CE (the article's loss, corrected): T^2 * H(p_t^T, p_s^T) on logits/T.

    Equal to KD plus the teacher's entropy, a constant for the student: same gradients,
    a different value. The article applied T to probabilities, which bounds the logits
    it softens to [0, 1] and makes T nearly meaningless.
    """

    def __init__(self, *, temperature: Temperature = 4.0, alpha: Probability = 0.9) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha

    def forward(self, inputs: LossInputs):
        t = self.temperature
        soft = (inputs.teacher_logits.detach() / t).softmax(dim=1)
        return {
            "ce": (1 - self.alpha) * F.cross_entropy(inputs.student_logits, inputs.targets),
            "tce": self.alpha * t**2 * soft_cross_entropy(inputs.student_logits / t, soft),
        }


@hookimpl
def register_losses(register):
    register("ce", CrossEntropy)
    register("kd", KD)
    register("soft_ce", SoftLabelCE)
    register("temperature_ce", TemperatureCE)
