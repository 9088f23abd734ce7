"""Contrastive representation distillation (CRD) with its momentum memory bank."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kdbench import (
    ConfigError,
    DistillationLoss,
    LossContext,
    LossInputs,
    Momentum,
    PositiveInt,
    Temperature,
    Weight,
    gather_rows,
    hookimpl,
)
from kdbench.core.functional import kd_kl

__all__ = ["CRD", "nce_loss"]

_KEY_TOP = 2**62  # random sampling keys lie in [0, _KEY_TOP)
_KEY_BUDGET = 2**25  # at most this many keys (8 bytes each) at once when sampling


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
    entry of the sample's own dataset index; the ``negatives`` others (capped at N - 1)
    are drawn without replacement (with replacement only where the pool is smaller), by
    ``negative_sampling``: ``"other_class"`` uniformly from the training samples of
    classes other than the anchor's (RepDistiller's default, ``CIFAR100InstanceSample`` in
    mode ``exact``), or ``"uniform"`` from every index but the sample's own. Scores
    exp(<v, m> / nce_t) are divided by a constant Z fixed on the first batch as mean
    score * N, as in the authors' code; bank entries are then updated as
    normalise(momentum * m + (1 - momentum) * v).

    Defaults are the authors' CIFAR-100 ones (dim 128, 16384 negatives, nce_t 0.07,
    momentum 0.5) and RepDistiller's ``--distill crd -r 1 -a 0 -b 0.8``: CE weight 1,
    no KD term, CRD weight 0.8. Set ``kd_weight = 1`` for RepDistiller's CRD+KD (KD at
    ``temperature`` 4, Hinton's T^2-scaled KL).
    """

    features = ("pool",)

    def __init__(
        self,
        *,
        weight: Weight = 0.8,
        ce_weight: Weight = 1.0,
        kd_weight: Weight = 0.0,
        temperature: Temperature = 4.0,
        feature_dim: PositiveInt = 128,
        negatives: PositiveInt = 16384,
        negative_sampling: Literal["other_class", "uniform"] = "other_class",
        nce_t: Temperature = 0.07,
        momentum: Momentum = 0.5,
    ) -> None:
        super().__init__()
        if negative_sampling not in ("other_class", "uniform"):
            raise ValueError(
                f"negative_sampling must be 'other_class' or 'uniform', got {negative_sampling!r}"
            )
        self.weight = weight
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.feature_dim = feature_dim
        self.negatives = negatives
        self.negative_sampling = negative_sampling
        self.nce_t = nce_t
        self.momentum = momentum
        self.num_data = 0
        self.num_negatives = 0
        self.pool_sizes = (0, 0)  # the smallest and largest pool of negatives, over anchors

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
        self.pool_sizes = (context.num_train - 1,) * 2  # "uniform": all but the anchor
        if self.negative_sampling == "other_class":
            self._index_classes(context)
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

    def _index_classes(self, context: LossContext) -> None:
        """Training indices sorted by class, each class's block in that order, pool sizes.

        Kept as buffers, so they move to the training device with the loss and sampling
        needs no host round trip; not persistent, as they are rebuilt from the data.
        """
        labels = context.train_labels
        if labels is None or len(labels) != context.num_train:
            raise ConfigError(
                "crd with negative_sampling = 'other_class' needs the training labels "
                "(LossContext.train_labels, one per training sample); set "
                "negative_sampling = 'uniform' to draw from every sample instead"
            )
        labels = torch.as_tensor(labels).long().flatten()
        counts = torch.bincount(labels)
        if int(counts.max()) == len(labels):
            raise ConfigError(
                "crd with negative_sampling = 'other_class' needs at least two classes in the "
                "training set"
            )
        present = counts[counts > 0]
        self.pool_sizes = (len(labels) - int(present.max()), len(labels) - int(present.min()))
        for name, value in (
            ("train_labels", labels),
            ("by_class", torch.argsort(labels, stable=True)),
            ("class_start", torch.cumsum(counts, 0) - counts),
            ("class_count", counts),
        ):
            self.register_buffer(name, value, persistent=False)

    def sample_negatives(self, indices: torch.Tensor) -> torch.Tensor:
        """``num_negatives`` indices per sample from its pool, by ``negative_sampling``.

        ``"uniform"``: the pool is the dataset minus the sample itself. ``"other_class"``:
        the training samples of the other classes; with the indices sorted by class, a
        position r in [0, N - n_c) (n_c the anchor class's size) steps over the class's
        block (r >= start -> r + n_c). Positions come from :meth:`_draw_positions`.
        """
        if self.negative_sampling == "uniform":
            own = indices.unsqueeze(1)
            position = self._draw_positions(torch.full_like(own, self.num_data - 1))
            return position + (position >= own).long()
        device = self.by_class.device
        classes = self.train_labels[indices.to(device)].unsqueeze(1)
        start, count = self.class_start[classes], self.class_count[classes]
        position = self._draw_positions(self.num_data - count)
        position = position + (position >= start).long() * count
        return self.by_class[position].to(indices.device)

    def _draw_positions(self, pool: torch.Tensor) -> torch.Tensor:
        """``num_negatives`` positions in [0, pool) per row of ``pool`` (a (B, 1) tensor).

        Without replacement, as RepDistiller's ``np.random.choice(..., replace=False)``: the
        k smallest of random 62-bit keys, one per position (positions past the row's pool
        get a key above every draw). A row whose pool is smaller than k draws with
        replacement, RepDistiller's ``replace = k > len(pool)``: uniform keys modulo the
        pool, a bias below pool / 2^62. Keys are made in blocks of rows of at most
        ``_KEY_BUDGET`` entries, so memory stays bounded on large datasets; nothing leaves
        the device.
        """
        k, device = self.num_negatives, pool.device
        smallest, width = self.pool_sizes
        if smallest < k:
            repeated = torch.randint(0, _KEY_TOP, (len(pool), k), device=device) % pool
            if width < k:  # every pool is smaller than k
                return repeated
        columns = torch.arange(width, device=device)
        picked = []
        for block in pool.split(max(1, _KEY_BUDGET // width)):
            keys = torch.randint(0, _KEY_TOP, (len(block), width), device=device)
            keys.masked_fill_(columns >= block, _KEY_TOP)
            picked.append(keys.topk(k, dim=1, largest=False, sorted=False).indices)
        picked = torch.cat(picked)
        return picked if smallest >= k else torch.where(pool < k, repeated, picked)

    def _scores(self, anchor: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, z):
        scores = torch.exp(torch.bmm(bank[rows], anchor.unsqueeze(2)).squeeze(2) / self.nce_t)
        if z < 0:  # the normalising constant is fixed once, on the first (global) batch
            z.fill_(gather_rows(scores.detach())[0].mean() * self.num_data)
        return scores / z

    def forward(self, inputs: LossInputs):
        indices = inputs.indices.long()
        vs = F.normalize(self.embed_student(inputs.student_features["pool"].float().flatten(1)))
        ft = inputs.teacher_features["pool"].detach().float().flatten(1)
        vt = F.normalize(self.embed_teacher(ft))
        # On several devices: negatives drawn for the global batch (the same random
        # numbers on every rank, as in one process), each rank keeping its own rows.
        every, start = gather_rows(indices)
        negatives = self.sample_negatives(every)[start : start + len(indices)]
        rows = torch.cat([indices.unsqueeze(1), negatives], dim=1)
        student_scores = self._scores(vs, self.memory_teacher, rows, self.z_student)
        teacher_scores = self._scores(vt, self.memory_student, rows, self.z_teacher)
        contrast = nce_loss(student_scores, self.num_data) + nce_loss(teacher_scores, self.num_data)
        if self.training:
            with torch.no_grad():
                # every rank's embeddings: each rank's banks stay the single-process ones
                for bank, v in ((self.memory_student, vs), (self.memory_teacher, vt)):
                    v = gather_rows(v.detach())[0]
                    moved = bank[every] * self.momentum + v * (1 - self.momentum)
                    bank.index_copy_(0, every, F.normalize(moved))
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
