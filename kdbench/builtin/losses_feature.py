"""Feature and relation distillers: FitNets, AT, SP, RKD and PKT.

Each returns ``{"ce": ..., <its term(s)>}``: cross-entropy on the labels with weight 1
plus the method's term, which is how RepDistiller's benchmark runs them
(``train_student.py -r 1 -a 0 -b <weight>``: CE weight 1, no KD term). The default
weights are those of RepDistiller's ``scripts/run_cifar_distill.sh`` (also mdistiller's
defaults). Teacher features are detached: only the student and the loss's own layers
learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdbench import (
    ConfigError,
    DistillationLoss,
    LossContext,
    LossInputs,
    PositiveFloat,
    TapPair,
    Taps,
    Weight,
    hookimpl,
)
from kdbench.core.functional import stage_taps

__all__ = ["AT", "PKT", "RKD", "SP", "FitNets"]


def _check_taps(
    loss: str, wanted: Sequence[str], available: Sequence[str], network: str = ""
) -> tuple[str, ...]:
    missing = [name for name in wanted if name not in available]
    if missing:
        who = (
            f"the {network} does not declare; its taps"
            if network
            else ("the teacher and student do not both declare; shared taps")
        )
        raise ConfigError(
            f"loss '{loss}' needs feature tap(s) {', '.join(missing)}, which "
            f"{who}: {', '.join(available) or 'none'}"
        )
    return tuple(wanted)


def _sides(available: Sequence[str]) -> tuple[Sequence[str], Sequence[str]]:
    """Each network's own taps when the harness says (``kdbench.Taps``), else the shared."""
    return getattr(available, "student", available), getattr(available, "teacher", available)


def _check_pair(loss: str, pair: TapPair, available: Sequence[str]) -> tuple[str | TapPair, ...]:
    """``pair`` as ``required_features`` returns it: a bare name when both sides share it."""
    student, teacher = _sides(available)
    _check_taps(loss, [pair.student], student, "student" if student is not teacher else "")
    _check_taps(loss, [pair.teacher], teacher, "teacher" if student is not teacher else "")
    return (pair.student,) if pair.student == pair.teacher else (pair,)


def _stages(loss: str, available: Sequence[str]) -> list[str]:
    stages = stage_taps(available)
    if not stages:
        raise ConfigError(
            f"loss '{loss}' needs stage taps (stage1..stageN) on both models; "
            f"shared taps: {', '.join(available) or 'none'}"
        )
    return stages


def _regressor(s_shape: Sequence[int], t_shape: Sequence[int], relu: bool) -> nn.Sequential:
    """FitNets' regressor: student hint -> teacher hint shape, then BN (and ReLU).

    Same size: a 1x1 conv. Larger student map: the paper's valid conv with kernel
    ``1 + s - t``, or a stride-2 3x3 conv when it is exactly twice the teacher's (fewer
    weights; RepDistiller's ConvReg does the same). Half the teacher's: a stride-2
    transposed conv. BN and the ReLU (for post-activation hints) follow RepDistiller.
    """
    if len(s_shape) == 1 and len(t_shape) == 1:
        layers: list[nn.Module] = [nn.Linear(s_shape[0], t_shape[0]), nn.BatchNorm1d(t_shape[0])]
    elif len(s_shape) == 3 and len(t_shape) == 3:
        (s_c, s_h, s_w), (t_c, t_h, t_w) = s_shape, t_shape
        if (s_h, s_w) == (2 * t_h, 2 * t_w):
            conv: nn.Module = nn.Conv2d(s_c, t_c, 3, stride=2, padding=1)
        elif (2 * s_h, 2 * s_w) == (t_h, t_w):
            conv = nn.ConvTranspose2d(s_c, t_c, 4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            conv = nn.Conv2d(s_c, t_c, (1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise ConfigError(
                f"fitnets cannot map a {s_h}x{s_w} student hint onto a {t_h}x{t_w} teacher hint"
            )
        layers = [conv, nn.BatchNorm2d(t_c)]
    else:
        raise ConfigError(
            f"fitnets needs hint features of the same kind on both models, got student "
            f"{tuple(s_shape)} and teacher {tuple(t_shape)}"
        )
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FitNets(DistillationLoss):
    """FitNets (Romero et al., ICLR 2015): ce*CE + weight*MSE(r(student hint), teacher hint).

    The paper's hint loss 1/2 ||u_h - r(v_g)||^2 is taken as a mean over elements, the
    scale RepDistiller's weight 100 is tuned for. ``hint`` names the student's tap and,
    unless ``teacher_hint`` names another, the teacher's. By default each network's
    middle stage (``stage2`` of three, RepDistiller's ``--hint_layer 2``), so a 2-stage
    student's ``stage1`` learns from a 3-stage teacher's ``stage2``. The regressor ``r``
    is built in :meth:`setup` and trained with the student. Like RepDistiller's
    benchmark, training is single-stage (the paper pre-trains to the hint, then runs KD).
    """

    def __init__(
        self,
        *,
        hint: str | None = None,
        teacher_hint: str | None = None,
        weight: Weight = 100.0,
        ce_weight: Weight = 1.0,
    ) -> None:
        super().__init__()
        self.hint = hint
        self.teacher_hint = teacher_hint
        self.weight = weight
        self.ce_weight = ce_weight
        self.pair: TapPair | None = None
        self.regressor: nn.Module | None = None

    def _pair(self, student: Sequence[str], teacher: Sequence[str]) -> TapPair:
        def middle(names: Sequence[str]) -> str:
            stages = _stages("fitnets", names)
            return stages[(len(stages) - 1) // 2]

        s = self.hint if self.hint is not None else middle(student)
        t = self.teacher_hint or (self.hint if self.hint is not None else middle(teacher))
        return TapPair(s, t)

    def required_features(self, available):
        self.pair = self._pair(*_sides(available))
        return _check_pair("fitnets", self.pair, available)

    def setup(self, context: LossContext) -> None:
        if self.pair is None:
            self.pair = self._pair(
                list(context.student_feature_shapes), list(context.teacher_feature_shapes)
            )
        self.regressor = _regressor(
            context.student_feature_shapes[self.pair.student],
            context.teacher_feature_shapes[self.pair.teacher],
            relu=not self.pair.teacher.endswith("_pre"),
        )

    def forward(self, inputs: LossInputs):
        student = self.regressor(inputs.student_features[self.pair.student].float())
        teacher = inputs.teacher_features[self.pair.teacher].detach().float()
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "fitnets": self.weight * F.mse_loss(student, teacher),
        }


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """AT's spatial attention: mean over channels of |A|^p, flattened and L2-normalised.

    The paper sums over channels; the mean differs by a constant that the normalisation
    removes.
    """
    return F.normalize(features.abs().pow(p).mean(dim=1).flatten(1), dim=1)


class AT(DistillationLoss):
    """AT (Zagoruyko & Komodakis, ICLR 2017): ce*CE + weight * sum_j mean((Q_s^j - Q_t^j)^2).

    Q^j = F(A^j) / ||F(A^j)||_2, F(A) = sum_c |A_c|^p with p = 2, for every stage tap
    by default (RepDistiller's ``feat[1:-1]``). Weight 1000 is RepDistiller's; the
    authors' code applies beta/2 with beta = 1000 to the same mean, half as much. When the
    two maps differ in size the larger is average-pooled to the smaller, as RepDistiller
    does.
    """

    def __init__(
        self,
        *,
        p: PositiveFloat = 2.0,
        weight: Weight = 1000.0,
        ce_weight: Weight = 1.0,
        layers: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.p = p
        self.weight = weight
        self.ce_weight = ce_weight
        self.layers = None if layers is None else list(layers)

    def _layers(self, available: Sequence[str]) -> list[str]:
        return self.layers if self.layers is not None else _stages("at", available)

    def required_features(self, available):
        return _check_taps("at", self._layers(available), available)

    def setup(self, context: LossContext) -> None:
        for name in self._layers(list(context.student_feature_shapes)):
            for shape in (
                context.student_feature_shapes[name],
                context.teacher_feature_shapes[name],
            ):
                if len(shape) != 3:
                    raise ConfigError(
                        f"at needs spatial feature maps (C, H, W); tap '{name}' has shape {shape}"
                    )

    def forward(self, inputs: LossInputs):
        total = inputs.student_logits.new_zeros(())
        for name in self._layers(list(inputs.student_features)):
            fs = inputs.student_features[name].float()
            ft = inputs.teacher_features[name].detach().float()
            if fs.shape[-2:] != ft.shape[-2:]:
                size = min(fs.shape[-2:], ft.shape[-2:], key=lambda hw: hw[0] * hw[1])
                fs, ft = F.adaptive_avg_pool2d(fs, size), F.adaptive_avg_pool2d(ft, size)
            diff = attention_map(fs, self.p) - attention_map(ft, self.p)
            total = total + diff.pow(2).mean()
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "at": self.weight * total,
        }


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """SP's G~ = row-L2-normalised (Q Q^T), Q the batch's features flattened to (b, chw)."""
    q = features.flatten(1)
    return F.normalize(q @ q.t(), dim=1)


class SP(DistillationLoss):
    """SP (Tung & Mori, ICCV 2019): ce*CE + weight * ||G~_t - G~_s||_F^2 / b^2.

    G~ is the row-normalised b x b similarity of the batch's activations at ``layer`` (by
    default each network's last stage, RepDistiller's ``feat[-2]``, whatever their
    depths); weight 3000 is RepDistiller's.
    """

    def __init__(
        self, *, weight: Weight = 3000.0, ce_weight: Weight = 1.0, layer: str | None = None
    ) -> None:
        super().__init__()
        self.weight = weight
        self.ce_weight = ce_weight
        self.layer = layer

    def _pair(self, available: Sequence[str]) -> TapPair:
        if self.layer is not None:
            return TapPair(self.layer, self.layer)
        student, teacher = _sides(available)
        return TapPair(_stages("sp", student)[-1], _stages("sp", teacher)[-1])

    def required_features(self, available):
        return _check_pair("sp", self._pair(available), available)

    def forward(self, inputs: LossInputs):
        pair = self._pair(Taps(list(inputs.student_features), list(inputs.teacher_features)))
        gs = similarity_matrix(inputs.student_features[pair.student].float())
        gt = similarity_matrix(inputs.teacher_features[pair.teacher].detach().float())
        b = gs.shape[0]
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "sp": self.weight * (gt - gs).pow(2).sum() / b**2,
        }


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between rows, zero on the diagonal, with a finite gradient there."""
    sq = x.pow(2).sum(dim=1)
    d2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2 * x @ x.t()).clamp_min(eps)
    off_diagonal = 1 - torch.eye(len(x), device=x.device, dtype=x.dtype)
    return d2.sqrt() * off_diagonal


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Distance-wise RKD: Huber(||s_i - s_j|| / mu_s, ||t_i - t_j|| / mu_t) over pairs.

    mu is the mean distance over distinct pairs; the Huber loss is averaged over all
    b^2 ordered pairs, the diagonal contributing zero, as in the authors' code.
    """
    ds, dt = pairwise_distances(student), pairwise_distances(teacher)
    ds = ds / ds[ds > 0].mean()
    dt = dt / dt[dt > 0].mean()
    return F.smooth_l1_loss(ds, dt)


def _angles(x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), dim=2)  # e[i, j] = unit(x_j - x_i)
    return torch.bmm(e, e.transpose(1, 2))  # [i, j, k] = cos of the angle at x_i


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Angle-wise RKD: Huber(<e_s^ij, e_s^kj>, <e_t^ij, e_t^kj>), e^ij = unit(x_i - x_j).

    Averaged over all b^3 ordered triplets; degenerate ones (a repeated point) are zero
    for both networks, as in the authors' code.
    """
    return F.smooth_l1_loss(_angles(student), _angles(teacher))


class RKD(DistillationLoss):
    """RKD (Park et al., CVPR 2019): ce*CE + weight*(25 * distance + 50 * angle) on ``pool``.

    The distance and angle weights are the paper's (lambda_D = 25, lambda_A = 50);
    RepDistiller runs RKD with an overall weight of 1 on the pooled embedding.
    """

    features = ("pool",)

    def __init__(
        self,
        *,
        distance_weight: Weight = 25.0,
        angle_weight: Weight = 50.0,
        weight: Weight = 1.0,
        ce_weight: Weight = 1.0,
    ) -> None:
        super().__init__()
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight
        self.weight = weight
        self.ce_weight = ce_weight

    def required_features(self, available):
        return _check_taps("rkd", self.features, available)

    def forward(self, inputs: LossInputs):
        s = inputs.student_features["pool"].float().flatten(1)
        t = inputs.teacher_features["pool"].detach().float().flatten(1)
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "distance": self.weight * self.distance_weight * rkd_distance(s, t),
            "angle": self.weight * self.angle_weight * rkd_angle(s, t),
        }


def cosine_conditional(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """PKT's p_{j|i}: cosine kernel (cos + 1) / 2 between rows, normalised per row."""
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    kernel = (x @ x.t() + 1) / 2
    return kernel / kernel.sum(dim=1, keepdim=True)


class PKT(DistillationLoss):
    """PKT (Passalis & Tefas, ECCV 2018): ce*CE + weight*KL(P_t || P_s) on ``pool``.

    P are the conditional probabilities p_{j|i} = K(x_i, x_j) / sum_k K(x_i, x_k) of the
    cosine kernel K(a, b) = (cos(a, b) + 1) / 2, and KL = sum p_t log(p_t / p_s). As in
    the authors' released code, self-pairs are kept in the normalisation and the KL terms
    are averaged over the b^2 entries (eps 1e-7); RepDistiller's weight 30000 is tuned for
    that mean.
    """

    features = ("pool",)

    def __init__(self, *, weight: Weight = 30000.0, ce_weight: Weight = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.ce_weight = ce_weight

    def required_features(self, available):
        return _check_taps("pkt", self.features, available)

    def forward(self, inputs: LossInputs):
        eps = 1e-7
        ps = cosine_conditional(inputs.student_features["pool"].float().flatten(1))
        pt = cosine_conditional(inputs.teacher_features["pool"].detach().float().flatten(1))
        kl = (pt * torch.log((pt + eps) / (ps + eps))).mean()
        return {
            "ce": self.ce_weight * F.cross_entropy(inputs.student_logits, inputs.targets),
            "pkt": self.weight * kl,
        }


@hookimpl
def register_losses(register):
    register("fitnets", FitNets)
    register("at", AT)
    register("sp", SP)
    register("rkd", RKD)
    register("pkt", PKT)
