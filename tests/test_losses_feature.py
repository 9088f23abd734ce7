"""FitNets, AT, SP, RKD and PKT, checked against their papers' equations.

Reference values are computed here in NumPy with explicit loops over samples, pairs and
triplets, never through kdbench's helpers.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import distil_steps, feature_context, loss_inputs, np_ce, rand
from kdbench import ConfigError
from kdbench.builtin.losses_feature import AT, PKT, RKD, SP, FitNets


def np_huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


# --- golden values -----------------------------------------------------------------------


def test_fitnets_matches_hint_loss_with_its_regressor():
    fs, ft = {"stage1": rand(1, 4, 3, 5, 5)}, {"stage1": rand(2, 4, 6, 5, 5)}
    loss = FitNets(hint="stage1")
    loss.setup(feature_context(fs, ft))
    inputs = loss_inputs(fs, ft, indices=range(4))
    terms = loss(inputs)
    # The regressor r: 1x1 conv (same size maps) + BN in training mode + ReLU.
    conv = loss.regressor[0]
    w, bias = conv.weight.detach().numpy()[:, :, 0, 0], conv.bias.detach().numpy()
    x, target = fs["stage1"].numpy(), ft["stage1"].numpy()
    y = np.zeros(target.shape)
    for b, o, h, v in itertools.product(*(range(n) for n in y.shape)):
        y[b, o, h, v] = sum(w[o, c] * x[b, c, h, v] for c in range(x.shape[1])) + bias[o]
    for o in range(y.shape[1]):
        mean, var = y[:, o].mean(), y[:, o].var()
        y[:, o] = np.maximum((y[:, o] - mean) / np.sqrt(var + 1e-5), 0)
    hint = ((y - target) ** 2).mean()
    assert terms["fitnets"].item() == pytest.approx(100 * hint, rel=1e-4)
    ce = np_ce(inputs.student_logits.numpy(), inputs.targets.numpy())
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)


@pytest.mark.parametrize(
    ("student", "teacher"),
    [
        ((3, 8, 8), (5, 4, 4)),
        ((3, 4, 4), (5, 8, 8)),
        ((3, 6, 6), (5, 4, 4)),
        ((3, 4, 4), (5, 4, 4)),
    ],
)
def test_fitnets_regressor_maps_student_hint_onto_teacher_shape(student, teacher):
    fs, ft = {"stage2": rand(3, 2, *student)}, {"stage2": rand(4, 2, *teacher)}
    loss = FitNets()
    loss.setup(feature_context(fs, ft))
    assert loss.regressor(fs["stage2"]).shape == ft["stage2"].shape


def test_fitnets_rejects_an_unmappable_hint():
    fs, ft = {"stage1": rand(3, 2, 3, 3, 3)}, {"stage1": rand(4, 2, 5, 5, 5)}
    with pytest.raises(ConfigError, match="cannot map"):
        FitNets().setup(feature_context(fs, ft))


def np_attention(a: np.ndarray) -> np.ndarray:
    """Zagoruyko & Komodakis: F(A) = sum_c |A_c|^2, flattened, divided by its L2 norm."""
    q = sum(np.abs(a[c]) ** 2 for c in range(a.shape[0])).reshape(-1)
    return q / np.sqrt((q**2).sum())


def test_at_matches_paper_equations():
    fs = {"stage1": rand(5, 3, 4, 6, 6), "stage2": rand(6, 3, 8, 3, 3)}
    ft = {"stage1": rand(7, 3, 5, 6, 6), "stage2": rand(8, 3, 2, 3, 3)}
    terms = AT()(loss_inputs(fs, ft, indices=range(3)))
    expected = 0.0
    for name in ("stage1", "stage2"):
        s, t = fs[name].numpy(), ft[name].numpy()
        per_layer = [((np_attention(s[b]) - np_attention(t[b])) ** 2).mean() for b in range(3)]
        expected += np.mean(per_layer)
    assert terms["at"].item() == pytest.approx(1000 * expected, rel=1e-5)


def test_at_pools_the_larger_map_to_the_smaller():
    fs, ft = {"stage1": rand(9, 2, 3, 8, 8)}, {"stage1": rand(10, 2, 4, 4, 4)}
    pooled = {"stage1": F.avg_pool2d(fs["stage1"], 2)}
    a = AT()(loss_inputs(fs, ft, indices=range(2)))["at"]
    b = AT()(loss_inputs(pooled, ft, indices=range(2)))["at"]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_sp_matches_paper_equations():
    fs, ft = {"stage2": rand(11, 5, 3, 2, 2)}, {"stage2": rand(12, 5, 7, 2, 2)}
    terms = SP()(loss_inputs(fs, ft, indices=range(5)))

    def normalised_similarity(a):
        q = a.reshape(len(a), -1)
        g = np.array([[q[i] @ q[j] for j in range(len(q))] for i in range(len(q))])
        return np.stack([row / np.sqrt((row**2).sum()) for row in g])

    gs, gt = (
        normalised_similarity(fs["stage2"].numpy()),
        normalised_similarity(ft["stage2"].numpy()),
    )
    expected = ((gt - gs) ** 2).sum() / 5**2
    assert terms["sp"].item() == pytest.approx(3000 * expected, rel=1e-5)


def test_rkd_matches_paper_equations():
    s, t = rand(13, 5, 4), rand(14, 5, 6)
    terms = RKD()(loss_inputs({"pool": s}, {"pool": t}, indices=range(5)))
    s, t = s.numpy().astype(np.float64), t.numpy().astype(np.float64)
    n = len(s)

    def distances(x):
        d = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])
        mu = np.mean([d[i, j] for i in range(n) for j in range(n) if i != j])
        return d / mu

    ds, dt = distances(s), distances(t)
    distance = np.mean([np_huber(ds[i, j] - dt[i, j]) for i in range(n) for j in range(n)])

    def cosine(x, i, j, k):
        if i == j or k == j:
            return 0.0
        eij = (x[i] - x[j]) / np.linalg.norm(x[i] - x[j])
        ekj = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
        return eij @ ekj

    angle = np.mean(
        [
            np_huber(cosine(s, i, j, k) - cosine(t, i, j, k))
            for i, j, k in itertools.product(range(n), repeat=3)
        ]
    )
    assert terms["distance"].item() == pytest.approx(25 * distance, rel=1e-5)
    assert terms["angle"].item() == pytest.approx(50 * angle, rel=1e-5)


def test_pkt_matches_paper_equations():
    s, t = rand(15, 6, 4), rand(16, 6, 5)
    terms = PKT()(loss_inputs({"pool": s}, {"pool": t}, indices=range(6)))
    eps = 1e-7

    def conditional(x):
        x = x.astype(np.float64)
        x = np.stack([row / (np.linalg.norm(row) + eps) for row in x])
        k = np.array([[(x[i] @ x[j] + 1) / 2 for j in range(len(x))] for i in range(len(x))])
        return np.stack([row / row.sum() for row in k])

    ps, pt = conditional(s.numpy()), conditional(t.numpy())
    n = len(ps)
    kl = np.mean(
        [pt[i, j] * np.log((pt[i, j] + eps) / (ps[i, j] + eps)) for i in range(n) for j in range(n)]
    )
    assert terms["pkt"].item() == pytest.approx(30000 * kl, rel=1e-4)


# --- which taps each loss asks for -------------------------------------------------------

AVAILABLE = ["stage1", "stage2", "stage3", "stage1_pre", "stage2_pre", "stage3_pre", "pool"]


def test_default_layers_follow_repdistiller():
    assert FitNets().required_features(AVAILABLE) == ("stage2",)
    assert FitNets().required_features(["stage1", "stage2", "pool"]) == ("stage1",)
    assert FitNets(hint="stage3_pre").required_features(AVAILABLE) == ("stage3_pre",)
    assert AT().required_features(AVAILABLE + ["stage10"]) == (
        "stage1",
        "stage2",
        "stage3",
        "stage10",
    )
    assert SP().required_features(AVAILABLE) == ("stage3",)
    assert RKD().required_features(AVAILABLE) == ("pool",)
    assert PKT().required_features(AVAILABLE) == ("pool",)


@pytest.mark.parametrize("loss", [FitNets(), AT(), SP(), RKD(), PKT(), FitNets(hint="stage9")])
def test_missing_taps_are_config_errors(loss):
    with pytest.raises(ConfigError, match="tap"):
        loss.required_features(["stem"])


# --- gradients ---------------------------------------------------------------------------

FEATURE_LOSSES = [FitNets, AT, SP, RKD, PKT]


def _feature_set(seed: int, channels: int, requires_grad: bool) -> dict[str, torch.Tensor]:
    shapes = {"stage1": (channels, 8, 8), "stage2": (2 * channels, 4, 4), "pool": (2 * channels,)}
    return {
        name: rand(seed + i, 6, *shape).relu().requires_grad_(requires_grad)
        for i, (name, shape) in enumerate(shapes.items())
    }


@pytest.mark.parametrize("loss_cls", FEATURE_LOSSES)
def test_gradients_reach_student_and_loss_parameters_not_teacher(loss_cls):
    fs, ft = _feature_set(20, 4, True), _feature_set(30, 6, True)
    loss = loss_cls()
    wanted = loss.required_features(list(fs))
    fs_used = {k: fs[k] for k in wanted}
    ft_used = {k: ft[k] for k in wanted}
    loss.setup(feature_context(fs_used, ft_used))
    sum(loss(loss_inputs(fs_used, ft_used, indices=range(6))).values()).backward()
    for name in wanted:
        assert fs[name].grad is not None and fs[name].grad.abs().sum() > 0, name
        assert ft[name].grad is None or torch.count_nonzero(ft[name].grad) == 0, name
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- a few real training steps -----------------------------------------------------------


@pytest.mark.parametrize("loss_cls", FEATURE_LOSSES)
def test_feature_loss_trains_a_small_student(loss_cls, digits):
    loss = loss_cls()
    totals, _ = distil_steps(loss, *digits, epoch=100)
    assert totals[-1] < totals[0]
