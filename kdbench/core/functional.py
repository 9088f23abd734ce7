"""Loss building blocks shared by the built-in losses and open to plugin authors."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F


def soft_cross_entropy(student_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """``-sum_j p_j log q_j`` averaged over the batch, with ``q = softmax(student_logits)``."""
    return -(target_probs * F.log_softmax(student_logits, dim=1)).sum(dim=1).mean()


def kd_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton's distillation term: ``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, batch mean.

    The ``T^2`` keeps the gradient's scale independent of the temperature.
    """
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    return kl * temperature**2


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each row of logits (Sun et al. 2024): zero mean, unit standard deviation."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


def warmup_factor(epoch: int, warmup: int) -> float:
    """The linear warm-up of a loss's distillation terms: ``min((epoch + 1) / warmup, 1)``.

    ``LossInputs.epoch`` counts from 0, so the first epoch gets ``1 / warmup`` and epoch
    ``warmup - 1`` on gets 1: the same factor as mdistiller's ``min(epoch / warmup, 1)``
    with its epochs counted from 1. ``warmup <= 0`` switches the ramp off (factor 1).
    """
    if warmup <= 0:
        return 1.0
    return min((epoch + 1) / warmup, 1.0)


def stage_taps(names: Iterable[str]) -> list[str]:
    """The ``stageK`` tap names among ``names`` in network order (``_pre`` and others left out).

    Feature losses pick their layers from what both models declare; sorting by the number
    keeps ``stage10`` after ``stage9``.
    """
    stages = [name for name in names if re.fullmatch(r"stage\d+", name)]
    return sorted(stages, key=lambda name: int(name.removeprefix("stage")))
