"""DKD, DIST and logit standardization, checked against their papers' equations.

Reference values are computed here in NumPy with explicit loops, straight from the
equations, never through kdbench's helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from kdbench import LossContext, LossInputs
from kdbench.builtin.losses_basic import KD
from kdbench.builtin.losses_logit import DIST, DKD, DKDLS, KDLS, dkd_parts, pearson_distance
from kdbench.builtin.models_small import cnn


def _logits(seed: int, batch: int = 6, classes: int = 5, scale: float = 3.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, classes, generator=gen, dtype=torch.float64)


def _targets(seed: int, batch: int = 6, classes: int = 5) -> torch.Tensor:
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed))


def _inputs(zs, zt, y, *, epoch: int = 100, epochs: int = 240) -> LossInputs:
    return LossInputs(zs, zt, y, torch.arange(len(y)), epoch, epochs)


# --- plain NumPy references -------------------------------------------------------------


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def np_kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(sum(pi * np.log(pi / qi) for pi, qi in zip(p, q, strict=True)))


def np_ce(zs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([-np.log(np_softmax(z)[t]) for z, t in zip(zs, y, strict=True)]))


def np_tckd_nckd(zs, zt, y, t: float) -> tuple[list[float], list[float]]:
    """Zhao et al. 2022, Eq. 3: b = [p_target, p_rest], p^ = softmax over non-targets."""
    tckd, nckd = [], []
    for s_row, t_row, target in zip(zs, zt, y, strict=True):
        ps, pt = np_softmax(s_row / t), np_softmax(t_row / t)
        bs = np.array([ps[target], 1 - ps[target]])
        bt = np.array([pt[target], 1 - pt[target]])
        rest = [j for j in range(len(s_row)) if j != target]
        hat_s = ps[rest] / ps[rest].sum()
        hat_t = pt[rest] / pt[rest].sum()
        tckd.append(np_kl(bt, bs))
        nckd.append(np_kl(hat_t, hat_s))
    return tckd, nckd


def np_pearson(u: np.ndarray, v: np.ndarray) -> float:
    du, dv = u - u.mean(), v - v.mean()
    return float((du * dv).sum() / np.sqrt((du * du).sum() * (dv * dv).sum()))


def np_zscore(z: np.ndarray) -> np.ndarray:
    return np.stack([(row - row.mean()) / row.std(ddof=1) for row in z])


# --- golden values -----------------------------------------------------------------------


def test_kd_term_is_zero_when_student_equals_teacher():
    z = _logits(0)
    y = _targets(0)
    assert KD()(_inputs(z, z.clone(), y))["kd"].item() == pytest.approx(0.0, abs=1e-12)
    assert KD()(_inputs(z, _logits(1), y))["kd"].item() > 1e-3


def test_dkd_matches_paper_equations():
    zs, zt, y = _logits(2), _logits(3), _targets(2)
    terms = DKD()(_inputs(zs, zt, y))
    tckd, nckd = np_tckd_nckd(zs.numpy(), zt.numpy(), y.numpy(), 4.0)
    assert terms["ce"].item() == pytest.approx(np_ce(zs.numpy(), y.numpy()), rel=1e-10)
    assert terms["tckd"].item() == pytest.approx(16 * 1.0 * np.mean(tckd), rel=1e-10)
    assert terms["nckd"].item() == pytest.approx(16 * 8.0 * np.mean(nckd), rel=1e-10)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_equals_tckd_plus_weighted_nckd(temperature):
    zs, zt, y = (
        _logits(4, batch=16, classes=10),
        _logits(5, batch=16, classes=10),
        _targets(4, 16, 10),
    )
    tckd, nckd = dkd_parts(zs, zt, y, temperature)
    for i in range(len(y)):
        ps = np_softmax(zs[i].numpy() / temperature)
        pt = np_softmax(zt[i].numpy() / temperature)
        kd = np_kl(pt, ps)
        decomposed = tckd[i].item() + (1 - pt[y[i]]) * nckd[i].item()
        assert decomposed == pytest.approx(kd, rel=1e-10)


def test_dkd_warmup_scales_kd_terms_linearly():
    zs, zt, y = _logits(6), _logits(7), _targets(6)
    loss = DKD(warmup=20)

    def kd_part(epoch):
        terms = loss(_inputs(zs, zt, y, epoch=epoch))
        return (terms["tckd"] + terms["nckd"]).item(), terms["ce"].item()

    full, ce = kd_part(19)
    for epoch in (0, 4, 9):
        ramped, ce_now = kd_part(epoch)
        assert ramped == pytest.approx(full * (epoch + 1) / 20, rel=1e-12)
        assert ce_now == ce
    assert kd_part(20)[0] == pytest.approx(full) and kd_part(200)[0] == pytest.approx(full)


def test_dist_matches_paper_equations():
    zs, zt, y = _logits(8, batch=7, classes=6), _logits(9, batch=7, classes=6), _targets(8, 7, 6)
    terms = DIST()(_inputs(zs, zt, y))
    t = 4.0
    ys = np.stack([np_softmax(row / t) for row in zs.numpy()])
    yt = np.stack([np_softmax(row / t) for row in zt.numpy()])
    inter = np.mean([1 - np_pearson(ys[i], yt[i]) for i in range(ys.shape[0])])
    intra = np.mean([1 - np_pearson(ys[:, j], yt[:, j]) for j in range(ys.shape[1])])
    assert terms["inter"].item() == pytest.approx(2.0 * t**2 * inter, rel=1e-6)
    assert terms["intra"].item() == pytest.approx(2.0 * t**2 * intra, rel=1e-6)
    assert terms["ce"].item() == pytest.approx(np_ce(zs.numpy(), y.numpy()), rel=1e-10)


def test_pearson_distance_is_invariant_to_positive_affine_maps():
    u, v = _logits(10, batch=4, classes=9), _logits(11, batch=4, classes=9)
    base = pearson_distance(u, v)
    for a, b in ((0.5, -2.0), (3.0, 5.0)):
        assert torch.allclose(pearson_distance(a * u + b, v), base, atol=1e-12)
    # A negative scale flips the correlation: the distance becomes 2 - d.
    assert torch.allclose(pearson_distance(-u, v), 2 - base, atol=1e-12)


def test_kd_ls_matches_paper_equations():
    zs, zt, y = _logits(12), _logits(13), _targets(12)
    terms = KDLS()(_inputs(zs, zt, y))
    t = 2.0
    ns, nt = np_zscore(zs.numpy()), np_zscore(zt.numpy())
    kl = np.mean([np_kl(np_softmax(nt[i] / t), np_softmax(ns[i] / t)) for i in range(len(y))])
    assert terms["kd"].item() == pytest.approx(9.0 * t**2 * kl, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(0.1 * np_ce(zs.numpy(), y.numpy()), rel=1e-10)


def test_logit_standardization_defaults_are_the_authors_cifar100_settings():
    # sunshangquan/logit-standardization-KD: mdistiller/engine/cfg.py sets
    # CFG.KD.LOSS.CE_WEIGHT = 0.1 and CFG.DKD.CE_WEIGHT = 1.0, CFG.DKD.ALPHA = 1.0,
    # CFG.DKD.BETA = 8.0, CFG.DKD.WARMUP = 20; tools/train.py --logit-stand sets the KD
    # weight and temperature from --kd-weight (default 9) and --base-temp (default 2),
    # and for DKD multiplies alpha and beta by the KD weight.
    kd_ls = KDLS()
    assert (kd_ls.ce_weight, kd_ls.kd_weight, kd_ls.temperature) == (0.1, 9.0, 2.0)
    dkd_ls = DKDLS()
    assert (dkd_ls.ce_weight, dkd_ls.alpha, dkd_ls.beta) == (1.0, 1.0 * 9, 8.0 * 9)
    assert (dkd_ls.temperature, dkd_ls.warmup) == (2.0, 20)


def test_kd_ls_hand_computed_case():
    # Student [1, 2, 3] and teacher [3, 2, 1] both have mean 2 and Bessel std 1, so they
    # standardise to [-1, 0, 1] and [1, 0, -1]; at T = 2 the log-probability difference
    # log p_t - log p_s is [1, 0, -1] (equal log-sum-exps by symmetry), so
    # KL(p_t || p_s) = p_t[0] - p_t[2] = 2 sinh(1/2) / (1 + 2 cosh(1/2)). The target is
    # class 2, so CE = -log softmax([1, 2, 3])[2] = log(1 + e^-1 + e^-2).
    zs, zt = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]])
    terms = KDLS()(_inputs(zs, zt, torch.tensor([2])))
    kl = 2 * math.sinh(0.5) / (1 + 2 * math.cosh(0.5))
    assert terms["kd"].item() == pytest.approx(9 * 2**2 * kl, rel=1e-6)
    assert terms["ce"].item() == pytest.approx(0.1 * math.log(1 + math.exp(-1) + math.exp(-2)))


def test_dkd_ls_is_dkd_on_z_scored_logits():
    zs, zt, y = _logits(14), _logits(15), _targets(14)
    terms = DKDLS()(_inputs(zs, zt, y))
    tckd, nckd = np_tckd_nckd(np_zscore(zs.numpy()), np_zscore(zt.numpy()), y.numpy(), 2.0)
    assert terms["tckd"].item() == pytest.approx(4 * 9.0 * np.mean(tckd), rel=1e-5)
    assert terms["nckd"].item() == pytest.approx(4 * 72.0 * np.mean(nckd), rel=1e-5)


@pytest.mark.parametrize("loss_cls", [KDLS, DKDLS])
def test_logit_standardization_ignores_shift_and_scale(loss_cls):
    zs, zt, y = _logits(16), _logits(17), _targets(16)
    loss = loss_cls()

    def distill(s, t):
        terms = loss(_inputs(s, t, y))
        return sum(v for k, v in terms.items() if k != "ce").item()

    base = distill(zs, zt)
    assert distill(3 * zs + 2, zt) == pytest.approx(base, rel=1e-6)
    assert distill(zs, 0.5 * zt - 1) == pytest.approx(base, rel=1e-6)
    assert distill(zs - 4, 7 * zt) == pytest.approx(base, rel=1e-6)
    # Without standardization the same rescaling changes KD, so the check has teeth.
    kd = KD()
    assert kd(_inputs(3 * zs + 2, zt, y))["kd"].item() != pytest.approx(
        kd(_inputs(zs, zt, y))["kd"].item(), rel=1e-3
    )


# --- gradients ---------------------------------------------------------------------------

LOGIT_LOSSES = [DKD, DKDLS, KDLS, DIST]


@pytest.mark.parametrize("loss_cls", LOGIT_LOSSES)
def test_gradients_reach_student_logits_only(loss_cls):
    zs = _logits(18).requires_grad_(True)
    zt = _logits(19).requires_grad_(True)
    terms = loss_cls()(_inputs(zs, zt, _targets(18)))
    sum(terms.values()).backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0
    assert zt.grad is None or torch.count_nonzero(zt.grad) == 0


# --- a few real training steps -----------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:128], dtype=torch.float32).view(-1, 1, 8, 8)
    return (x - x.mean()) / x.std(), torch.tensor(y[:128])


@pytest.mark.parametrize("loss_cls", LOGIT_LOSSES)
def test_logit_loss_trains_a_small_student(loss_cls, digits):
    x, y = digits
    torch.manual_seed(0)
    student, teacher = cnn(10, 1, width=8), cnn(10, 1, width=16).eval()
    loss = loss_cls()
    loss.setup(LossContext(num_classes=10, num_train=len(x)))
    with torch.no_grad():
        zt = teacher(x)
    optimizer = torch.optim.SGD([*student.parameters(), *loss.parameters()], lr=0.05, momentum=0.9)
    totals = []
    for _ in range(12):
        total = sum(loss(_inputs(student(x), zt, y)).values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < totals[0]
