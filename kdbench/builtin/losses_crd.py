"""Contrastive representation distillation (CRD) with its momentum memory bank."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench import ConfigError, DistillationLoss, LossContext, LossInputs, hookimpl
from kdbench.functional import kd_kl

__all__ = ["CRD", "nce_loss"]


def nce_loss(scores: torch.Tensor, num_data: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE objective on normalised critic scores, summed over K+1 columns, batch mean.

    Column 0 is the positive pair; the K others are negatives drawn with probability
    P_n = 1/N. With h = P / (P + K * P_n) (the paper's critic h(T, S)), the loss is
    -(log h(pos) + sum_negatives log(1 - h(neg))).
    """
    k = scores.shape[1] - 1
    noise = k / num_data
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    negatives = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(positive.sum() + negatives.sum()) / scores.shape[0]


class CRD(DistillationLoss):
    """CRD (Tian et al., ICLR 2020): ce*CE + kd_weight*KD + weight*(NCE_s + NCE_t).

    Student and teacher ``pool`` embeddings are projected by linear heads to
    ``feature_dim`` and L2-normalised (both heads are trained; the teacher stays frozen).
    Each is contrasted with the other network's memory bank: the positive is the bank
    entry of the sample's own dataset index, the ``negatives`` others are drawn uniformly
    from the other indices (capped at N - 1). Scores exp(<v, m> / nce_t) are divided by a
    constant Z fixed on the first batch as mean score * N, as in the authors' code; bank
    entries are then updated as normalise(momentum * m + (1 - momentum) * v).

    Defaults are the authors' CIFAR-100 ones (dim 128, 16384 negatives, nce_t 0.07,
    momentum 0.5) and RepDistiller's ``--distill crd -r 1 -a 0 -b 0.8``: CE weight 1,
    no KD term, CRD weight 0.8. Set ``kd_weight = 1`` for RepDistiller's CRD+KD (KD at
    ``temperature`` 4, Hinton's T^2-scaled KL). RepDistiller draws negatives from other
    classes; labels of unseen indices are unknown here, so negatives are any other index.
    """

    features = ("pool",)

    def __init__(
        self,
        *,
        weight: float = 0.8,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
        feature_dim: int = 128,
        negatives: int = 16384,
        nce_t: float = 0.07,
        momentum: float = 0.5,
    ) -> None:
        super().__init__()
        self.weight = weight
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.feature_dim = feature_dim
        self.negatives = negatives
        self.nce_t = nce_t
        self.momentum = momentum
        self.num_data = 0
        self.num_negatives = 0

    def required_features(self, available):
        if "pool" not in available:
            raise ConfigError(
                "loss 'crd' needs the 'pool' feature tap on both models; shared taps: "
                f"{', '.join(available) or 'none'}"
            )
        return ("pool",)

    def setup(self, context: LossContext) -> None:
        if context.num_train < 2:
            raise ConfigError("crd needs a training set of at least two samples")
        s_dim = math.prod(context.student_feature_shapes["pool"])
        t_dim = math.prod(context.teacher_feature_shapes["pool"])
        self.embed_student = nn.Linear(s_dim, self.feature_dim)
        self.embed_teacher = nn.Linear(t_dim, self.feature_dim)
        self.num_data = context.num_train
        self.num_negatives = min(self.negatives, context.num_train - 1)
        # Uniform in [-b, b] with b = sqrt(3 / dim): rows of roughly unit norm from the start.
        bound = 1 / math.sqrt(self.feature_dim / 3)
        for name in ("memory_student", "memory_teacher"):
            bank = torch.rand(context.num_train, self.feature_dim) * 2 * bound - bound
            self.register_buffer(name, bank)
        self.register_buffer("z_student", torch.tensor(-1.0))
        self.register_buffer("z_teacher", torch.tensor(-1.0))

    def sample_negatives(self, indices: torch.Tensor) -> torch.Tensor:
        """``num_negatives`` indices per sample, uniform over the dataset minus the sample."""
        draws = torch.randint(
            0, self.num_data - 1, (len(indices), self.num_negatives), device=indices.device
        )
        return draws + (draws >= indices.unsqueeze(1)).long()

    def _scores(self, anchor: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, z):
        scores = torch.exp(torch.bmm(bank[rows], anchor.unsqueeze(2)).squeeze(2) / self.nce_t)
        if z < 0:  # the normalising constant is fixed once, on the first batch
            z.fill_(scores.detach().mean() * self.num_data)
        return scores / z

    def forward(self, inputs: LossInputs):
        indices = inputs.indices.long()
        vs = F.normalize(self.embed_student(inputs.student_features["pool"].float().flatten(1)))
        ft = inputs.teacher_features["pool"].detach().float().flatten(1)
        vt = F.normalize(self.embed_teacher(ft))
        rows = torch.cat([indices.unsqueeze(1), self.sample_negatives(indices)], dim=1)
        student_scores = self._scores(vs, self.memory_teacher, rows, self.z_student)
        teacher_scores = self._scores(vt, self.memory_student, rows, self.z_teacher)
        contrast = nce_loss(student_scores, self.num_data) + nce_loss(teacher_scores, self.num_data)
        if self.training:
            with torch.no_grad():
                for bank, v in ((self.memory_student, vs), (self.memory_teacher, vt)):
                    moved = bank[indices] * self.momentum + v.detach() * (1 - self.momentum)
                    bank.index_copy_(0, indices, F.normalize(moved))
        terms = {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "crd": self.weight * contrast,
        }
        if self.kd_weight:
            terms["kd"] = self.kd_weight * kd_kl(
                inputs.student_logits, inputs.teacher_logits.detach(), self.temperature
            )
        return terms


@hookimpl
def register_losses(register):
    register("crd", CRD)
