"""ReviewKD: knowledge review with attention-based fusion and the hierarchical context loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench import (
    ConfigError,
    DistillationLoss,
    LossContext,
    LossInputs,
    NonNegativeInt,
    PositiveInt,
    Weight,
    hookimpl,
)
from kdbench.core.functional import stage_taps, warmup_factor

__all__ = ["ABF", "ReviewKD", "hcl"]


def hcl(student: torch.Tensor, teacher: torch.Tensor, levels=(4, 2, 1)) -> torch.Tensor:
    """Hierarchical context loss (HCL) of one level (Chen et al. 2021).

    MSE of the full maps plus MSE of their average-pooled 4x4, 2x2 and 1x1 versions, each
    pyramid level weighted half the previous (1, 1/2, 1/4, 1/8), and the sum divided by the
    total weight. Levels not smaller than the map are skipped, as in the authors' code.
    """
    loss = F.mse_loss(student, teacher)
    weight, total = 1.0, 1.0
    for size in levels:
        if size >= student.shape[-2]:
            continue
        weight /= 2
        pooled_s = F.adaptive_avg_pool2d(student, size)
        pooled_t = F.adaptive_avg_pool2d(teacher, size)
        loss = loss + weight * F.mse_loss(pooled_s, pooled_t)
        total += weight
    return loss / total


class ABF(nn.Module):
    """Attention-based fusion of one student stage with the fused output of the deeper ones.

    1x1 conv + BN to ``mid`` channels; with a residual from the deeper stage (upsampled,
    nearest), a 1x1 conv + sigmoid over both gives two spatial attention maps that weight
    the sum; the result, resized to the teacher's map, goes through a 3x3 conv + BN to the
    teacher's channels. The fused mid-channel map is handed on to the next shallower stage.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels)
        )
        self.project = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.attention = (
            nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        )
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.project[0].weight, a=1)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None, out_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(x)
        if self.attention is not None:
            residual = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            weights = self.attention(torch.cat([x, residual], dim=1))
            x = x * weights[:, 0:1] + residual * weights[:, 1:2]
        if tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, size=out_size, mode="nearest")
        return self.project(x), x


def _as_map(features: torch.Tensor) -> torch.Tensor:
    """A (B, C) embedding as a (B, C, 1, 1) map; maps pass through."""
    return features[:, :, None, None] if features.dim() == 2 else features


class ReviewKD(DistillationLoss):
    """ReviewKD (Chen et al., CVPR 2021): ce*CE + weight*ramp*sum_i HCL(F_i, T_i).

    The student's stage outputs and ``pool`` embedding are fused deepest-first by ABF
    modules (built in :meth:`setup`), so each F_i reviews the stages below it; F_i is
    matched to the teacher's same level (its pre-activation ``stageK_pre`` when both
    declare it, as the authors take the teacher's pre-ReLU features, and ``pool``) by the
    hierarchical context loss :func:`hcl`. ``ramp`` is
    :func:`~kdbench.core.functional.warmup_factor`, DKD's rule, as in mdistiller. Defaults:
    weight 5 (the authors' and mdistiller's resnet32x4->resnet8x4 setting, also used for
    the WRN and ShuffleNetV1 pairs; 0.6 for resnet56->resnet20, 1 for resnet110->resnet32,
    8 for ShuffleNetV2), warm-up 20 epochs, CE 1, mid channels min(512, student embedding).
    ``student_preact = True`` fuses the student's ``stageK_pre`` too (where both declare
    it), as mdistiller's ImageNet configs do (``STU_PREACT``); its CIFAR ones do not.
    """

    def __init__(
        self,
        *,
        weight: Weight = 5.0,
        ce_weight: Weight = 1.0,
        warmup: NonNegativeInt = 20,
        mid_channels: PositiveInt | None = None,
        teacher_preact: bool = True,
        student_preact: bool = False,
    ) -> None:
        super().__init__()
        self.weight = weight
        self.ce_weight = ce_weight
        self.warmup = warmup
        self.mid_channels = mid_channels
        self.teacher_preact = teacher_preact
        self.student_preact = student_preact
        self.student_taps: list[str] = []
        self.teacher_taps: list[str] = []
        self.out_sizes: list[tuple[int, int]] = []

    def _levels(self, available) -> tuple[list[str], list[str]]:
        # setup sees only the taps asked for: with student_preact, no plain stageK at all
        stages = stage_taps(dict.fromkeys(name.removesuffix("_pre") for name in available))
        if not stages or "pool" not in available:
            raise ConfigError(
                "loss 'reviewkd' needs stage taps (stage1..stageN) and 'pool' on both models; "
                f"shared taps: {', '.join(available) or 'none'}"
            )

        def levels(preact: bool) -> list[str]:
            return [f"{s}_pre" if preact and f"{s}_pre" in available else s for s in stages]

        return [*levels(self.student_preact), "pool"], [*levels(self.teacher_preact), "pool"]

    def required_features(self, available):
        student, teacher = self._levels(available)
        return tuple(dict.fromkeys(student + teacher))

    def setup(self, context: LossContext) -> None:
        s_shapes, t_shapes = context.student_feature_shapes, context.teacher_feature_shapes
        self.student_taps, self.teacher_taps = self._levels([n for n in s_shapes if n in t_shapes])
        s_dims = [(s_shapes[name] + (1, 1))[:3] for name in self.student_taps]
        t_dims = [(t_shapes[name] + (1, 1))[:3] for name in self.teacher_taps]
        mid = self.mid_channels or min(512, s_dims[-1][0])
        last = len(s_dims) - 1
        self.abfs = nn.ModuleList(
            ABF(s[0], mid, t[0], fuse=i < last)
            for i, (s, t) in enumerate(zip(s_dims, t_dims, strict=True))
        )
        self.out_sizes = [(t[1], t[2]) for t in t_dims]

    def reviewed_features(self, student_features) -> list[torch.Tensor]:
        """The ABF outputs F_i, shallow to deep, each shaped like the teacher's level i."""
        maps = [_as_map(student_features[name].float()) for name in self.student_taps]
        outputs: list[torch.Tensor] = [None] * len(maps)
        residual = None
        for i in reversed(range(len(maps))):
            outputs[i], residual = self.abfs[i](maps[i], residual, self.out_sizes[i])
        return outputs

    def forward(self, inputs: LossInputs):
        reviewed = self.reviewed_features(inputs.student_features)
        targets = [
            _as_map(inputs.teacher_features[name].detach().float()) for name in self.teacher_taps
        ]
        review = sum(hcl(s, t) for s, t in zip(reviewed, targets, strict=True))
        ramp = warmup_factor(inputs.epoch, self.warmup)
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "reviewkd": self.weight * ramp * review,
        }


@hookimpl
def register_losses(register):
    register("reviewkd", ReviewKD)
