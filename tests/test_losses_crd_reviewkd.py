"""CRD and ReviewKD, checked against their papers' equations and the authors' recipes.

Reference values are computed here in NumPy (or from raw torch primitives on the
module's own weights), never through the losses' helpers.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from conftest import distil_steps, feature_context, loss_inputs, np_ce, rand, write_benchmark
from kdbench import ConfigError
from kdbench.builtin.datasets_digits import digits as digits_dataset
from kdbench.builtin.losses_crd import CRD
from kdbench.builtin.losses_reviewkd import ABF, ReviewKD, hcl
from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.runner import plan, provision_teachers

# --- CRD ---------------------------------------------------------------------------------


def _labelled_context(fs, ft, labels):
    return replace(feature_context(fs, ft, num_train=len(labels)), train_labels=labels)


def _crd_setup(num_train=12, negatives=4, labels=None, **params):
    """A CRD set up on ``num_train`` samples; labels cycle through 3 classes by default."""
    fs, ft = {"pool": rand(1, 3, 5)}, {"pool": rand(2, 3, 6)}
    labels = torch.arange(num_train) % 3 if labels is None else labels
    torch.manual_seed(0)
    loss = CRD(negatives=negatives, feature_dim=8, **params)
    loss.setup(_labelled_context(fs, ft, labels))
    return loss, fs, ft


class _LabelledCRD(CRD):
    """CRD whose setup context carries the labels ``distil_steps`` does not pass."""

    def __init__(self, labels, **params):
        super().__init__(**params)
        self.labels = labels

    def setup(self, context):
        super().setup(replace(context, train_labels=self.labels))


def _np_embed(linear, x):
    v = x @ linear.weight.detach().numpy().T + linear.bias.detach().numpy()
    return np.stack([row / np.linalg.norm(row) for row in v])


def _np_nce(anchor, bank, rows, z, n, k, eps=1e-7):
    """Tian et al. 2020: h = P / (P + K/N) with P = exp(<v, m> / 0.07) / Z."""
    loss = 0.0
    for i, sample_rows in enumerate(rows):
        p = [np.exp(bank[r] @ anchor[i] / 0.07) / z for r in sample_rows]
        loss -= np.log(p[0] / (p[0] + k / n + eps))
        loss -= sum(np.log((k / n) / (q + k / n + eps)) for q in p[1:])
    return loss / len(rows)


def test_crd_matches_nce_objective_and_updates_memory_with_momentum(monkeypatch):
    loss, fs, ft = _crd_setup()
    indices = torch.tensor([3, 7, 0])
    negatives = torch.tensor([[1, 2, 4, 5], [0, 11, 6, 3], [9, 8, 10, 7]])
    monkeypatch.setattr(loss, "sample_negatives", lambda idx: negatives)
    bank_s, bank_t = loss.memory_student.numpy().copy(), loss.memory_teacher.numpy().copy()
    inputs = loss_inputs(fs, ft, indices=indices)
    terms = loss(inputs)

    vs = _np_embed(loss.embed_student, fs["pool"].numpy())
    vt = _np_embed(loss.embed_teacher, ft["pool"].numpy())
    rows = np.concatenate([indices.numpy()[:, None], negatives.numpy()], axis=1)
    n, k = 12, 4
    # Z is fixed on the first batch: the mean unnormalised score times N.
    z_s = np.mean([[np.exp(bank_t[r] @ vs[i] / 0.07) for r in rows[i]] for i in range(3)]) * n
    z_t = np.mean([[np.exp(bank_s[r] @ vt[i] / 0.07) for r in rows[i]] for i in range(3)]) * n
    expected = _np_nce(vs, bank_t, rows, z_s, n, k) + _np_nce(vt, bank_s, rows, z_t, n, k)
    assert terms["crd"].item() == pytest.approx(0.8 * expected, rel=1e-4)
    ce = np_ce(inputs.student_logits.numpy(), inputs.targets.numpy())
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert "kd" not in terms  # RepDistiller's CRD runs with -a 0

    for bank_before, bank_after, v in (
        (bank_s, loss.memory_student.numpy(), vs),
        (bank_t, loss.memory_teacher.numpy(), vt),
    ):
        for i, row in enumerate(indices.tolist()):
            moved = 0.5 * bank_before[row] + 0.5 * v[i]
            np.testing.assert_allclose(bank_after[row], moved / np.linalg.norm(moved), rtol=1e-5)
        untouched = [r for r in range(n) if r not in indices.tolist()]
        np.testing.assert_array_equal(bank_after[untouched], bank_before[untouched])

    # Z stays fixed: a second step normalises with the first step's constant.
    z_first = loss.z_student.item()
    loss(inputs)
    assert loss.z_student.item() == z_first == pytest.approx(z_s, rel=1e-5)


def test_crd_uniform_negatives_exclude_the_sample_and_are_capped_at_n_minus_1():
    loss, _, _ = _crd_setup(num_train=10, negatives=16384, negative_sampling="uniform")
    assert loss.num_negatives == 9
    indices = torch.arange(10)
    drawn = loss.sample_negatives(indices)
    assert drawn.shape == (10, 9)
    assert not (drawn == indices[:, None]).any()
    assert drawn.min() >= 0 and drawn.max() <= 9
    assert len(drawn.unique()) == 10  # every index gets drawn as someone's negative


# Unequal classes, shuffled: 4, 8, 12 and 16 samples of classes 0..3.
_uneven = torch.tensor([0] * 4 + [1] * 8 + [2] * 12 + [3] * 16)[
    torch.randperm(40, generator=torch.Generator().manual_seed(3))
]


def test_crd_negatives_come_from_other_classes_by_default():
    loss, _, _ = _crd_setup(negatives=2000, labels=_uneven)
    assert loss.negative_sampling == "other_class" and loss.num_negatives == 39
    indices = torch.arange(40)
    torch.manual_seed(1)
    drawn = loss.sample_negatives(indices)
    assert drawn.shape == (40, 39)
    assert drawn.min() >= 0 and drawn.max() <= 39
    assert not (_uneven[drawn] == _uneven[indices].unsqueeze(1)).any()


@pytest.mark.parametrize("anchor_class", [0, 3])
def test_crd_other_class_negatives_are_uniform_over_every_other_class_sample(anchor_class):
    loss, _, _ = _crd_setup(negatives=4000, labels=_uneven)
    anchors = torch.nonzero(_uneven == anchor_class).flatten()
    torch.manual_seed(2)
    drawn = loss.sample_negatives(anchors.repeat(2000)).flatten()  # 39 per anchor
    counts = torch.bincount(drawn, minlength=40)
    others = torch.nonzero(_uneven != anchor_class).flatten()
    assert counts[_uneven == anchor_class].sum() == 0
    assert (counts[others] > 0).all()  # every other-class sample can be drawn
    # Equal expected counts for every other-class sample; a sampler that favoured a class
    # (say, weighting by class rather than by sample) fails this at any usual level.
    assert chisquare(counts[others].numpy()).pvalue > 1e-3
    expected = len(drawn) / len(others)
    assert counts[others].max() < 1.1 * expected and counts[others].min() > 0.9 * expected


def test_crd_uniform_sampling_still_draws_same_class_samples():
    loss, _, _ = _crd_setup(negatives=2000, labels=_uneven, negative_sampling="uniform")
    indices = torch.arange(40)
    torch.manual_seed(1)
    drawn = loss.sample_negatives(indices)
    same = _uneven[drawn] == _uneven[indices].unsqueeze(1)
    # Each anchor's class holds 3..15 of the 39 other samples: about 30% of draws.
    assert 0.2 < same.float().mean() < 0.4


def test_crd_other_class_sampling_needs_the_training_labels():
    fs, ft = {"pool": rand(1, 3, 5)}, {"pool": rand(2, 3, 6)}
    with pytest.raises(ConfigError, match="train_labels"):
        CRD().setup(feature_context(fs, ft, num_train=12))
    with pytest.raises(ConfigError, match="two classes"):
        CRD().setup(_labelled_context(fs, ft, torch.zeros(12, dtype=torch.long)))
    CRD(negative_sampling="uniform").setup(feature_context(fs, ft, num_train=12))


def test_harness_hands_crd_the_training_labels_and_it_draws_other_classes(tmp_path, monkeypatch):
    bench = write_benchmark(tmp_path)
    bench.write_text(
        bench.read_text()
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace("[losses.kd]\ntemperature = 4.0", "[losses.crd]\nnegatives = 64")
        .replace('student = "mlp"\nstudent_params = { hidden = 16 }',
                 'student = "cnn"\nstudent_params = { width = 4 }')
    )  # fmt: skip
    labels_seen, draws = [], []
    setup, sample = CRD.setup, CRD.sample_negatives

    def spy_setup(self, context):
        labels_seen.append(context.train_labels)
        setup(self, context)

    def spy_sample(self, indices):
        drawn = sample(self, indices)
        draws.append((indices.clone(), drawn.clone()))
        return drawn

    monkeypatch.setattr(CRD, "setup", spy_setup)
    monkeypatch.setattr(CRD, "sample_negatives", spy_sample)
    context = RunContext()
    [cell] = [c for c in plan(bench, context).cells if c.loss.label == "crd"]
    weights = provision_teachers([cell], context, tmp_path, torch.device("cpu"))
    job = CellJob(cell=cell, device="cpu", teacher_weights=weights[cell.teacher.id]["weights"])
    assert run_cell(job, context)["status"] == "ok"

    train_labels = digits_dataset().train.labels
    [labels] = labels_seen
    assert torch.equal(labels, train_labels)
    assert draws
    for indices, drawn in draws:
        assert not (train_labels[drawn] == train_labels[indices].unsqueeze(1)).any()


def test_crd_rejects_an_unknown_negative_sampling():
    with pytest.raises(ValueError, match="other_class"):
        CRD(negative_sampling="same_class")


def test_crd_kd_weight_adds_hintons_kd_term():
    fs, ft = {"pool": rand(1, 3, 5)}, {"pool": rand(2, 3, 6)}
    loss = CRD(kd_weight=1.0, negatives=4)
    loss.setup(_labelled_context(fs, ft, torch.arange(12) % 3))
    inputs = loss_inputs(fs, ft, indices=[0, 1, 2])
    kd = loss(inputs)["kd"].item()
    t = 4.0
    expected = 0.0
    for zs, zt in zip(inputs.student_logits.numpy(), inputs.teacher_logits.numpy(), strict=True):
        ps, pt = np.exp(zs / t) / np.exp(zs / t).sum(), np.exp(zt / t) / np.exp(zt / t).sum()
        expected += (pt * np.log(pt / ps)).sum()
    assert kd == pytest.approx(t**2 * expected / 3, rel=1e-5)


def test_crd_gradients_reach_student_and_both_embeddings_not_teacher():
    fs = {"pool": rand(1, 4, 5).requires_grad_(True)}
    ft = {"pool": rand(2, 4, 6).requires_grad_(True)}
    loss = CRD(negatives=8)
    loss.setup(_labelled_context(fs, ft, torch.arange(20) % 4))
    sum(loss(loss_inputs(fs, ft, indices=[4, 9, 1, 17])).values()).backward()
    assert fs["pool"].grad.abs().sum() > 0
    assert ft["pool"].grad is None or torch.count_nonzero(ft["pool"].grad) == 0
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {name for name, _ in loss.named_buffers()} >= {"memory_student", "memory_teacher"}
    assert all(not b.requires_grad for b in loss.buffers())


# --- ReviewKD ----------------------------------------------------------------------------


def np_hcl(fs: np.ndarray, ft: np.ndarray) -> float:
    """Chen et al. 2021: MSE at full size plus pooled 4x4, 2x2, 1x1 levels, halving weights."""

    def pool(x, size):
        h = x.shape[-1] // size
        out = np.zeros(x.shape[:2] + (size, size))
        for i in range(size):
            for j in range(size):
                out[:, :, i, j] = x[:, :, i * h : (i + 1) * h, j * h : (j + 1) * h].mean(
                    axis=(2, 3)
                )
        return out

    loss, weight, total = ((fs - ft) ** 2).mean(), 1.0, 1.0
    for size in (4, 2, 1):
        if size >= fs.shape[-1]:
            continue
        weight /= 2
        loss += weight * ((pool(fs, size) - pool(ft, size)) ** 2).mean()
        total += weight
    return loss / total


@pytest.mark.parametrize("size", [8, 4, 2, 1])
def test_hcl_matches_paper_pyramid(size):
    fs, ft = rand(3, 2, 3, size, size), rand(4, 2, 3, size, size)
    assert hcl(fs, ft).item() == pytest.approx(np_hcl(fs.numpy(), ft.numpy()), rel=1e-5)


def test_abf_fuses_with_attention_over_own_and_residual_features():
    torch.manual_seed(0)
    abf = ABF(3, 4, 5, fuse=True)
    x, residual = rand(5, 2, 3, 4, 4), rand(6, 2, 4, 2, 2)
    out, passed_on = abf(x, residual, (8, 8))

    def bn(y):
        return F.batch_norm(y, None, None, training=True, eps=1e-5)

    own = bn(F.conv2d(x, abf.reduce[0].weight))
    up = residual.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest x2
    att = torch.sigmoid(F.conv2d(torch.cat([own, up], 1), *abf.attention[0].parameters()))
    fused = own * att[:, :1] + up * att[:, 1:]
    fused = fused.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    expected = bn(F.conv2d(fused, abf.project[0].weight, padding=1))
    torch.testing.assert_close(passed_on, fused)
    torch.testing.assert_close(out, expected)


def _review_features(requires_grad=False):
    fs = {
        "stage1": rand(10, 4, 8, 4, 4),
        "stage2": rand(11, 4, 16, 4, 4),
        "stage1_pre": rand(12, 4, 8, 8, 8),
        "stage2_pre": rand(13, 4, 16, 4, 4),
        "pool": rand(14, 4, 16),
    }
    ft = {
        "stage1": rand(20, 4, 16, 4, 4),
        "stage2": rand(21, 4, 32, 4, 4),
        "stage1_pre": rand(22, 4, 16, 8, 8),
        "stage2_pre": rand(23, 4, 32, 4, 4),
        "pool": rand(24, 4, 32),
    }
    for t in (*fs.values(), *ft.values()):
        t.requires_grad_(requires_grad)
    return fs, ft


def test_reviewkd_reviews_deep_to_shallow_and_matches_teacher_preactivations():
    fs, ft = _review_features()
    loss = ReviewKD()
    assert set(loss.required_features(list(fs))) == set(fs)
    loss.setup(feature_context(fs, ft))
    assert loss.student_taps == ["stage1", "stage2", "pool"]
    assert loss.teacher_taps == ["stage1_pre", "stage2_pre", "pool"]
    assert [abf.attention is not None for abf in loss.abfs] == [True, True, False]
    inputs = loss_inputs(fs, ft, indices=range(4))
    reviewed = loss.reviewed_features(fs)
    assert [tuple(r.shape) for r in reviewed] == [(4, 16, 8, 8), (4, 32, 4, 4), (4, 32, 1, 1)]
    teacher = [ft["stage1_pre"], ft["stage2_pre"], ft["pool"][:, :, None, None]]
    expected = sum(
        np_hcl(r.detach().numpy(), t.numpy()) for r, t in zip(reviewed, teacher, strict=True)
    )
    terms = loss(inputs)
    assert terms["reviewkd"].item() == pytest.approx(5.0 * expected, rel=1e-4)
    ce = np_ce(inputs.student_logits.numpy(), inputs.targets.numpy())
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)


def test_reviewkd_warms_up_linearly_as_mdistiller_does():
    fs, ft = _review_features()
    loss = ReviewKD()
    loss.setup(feature_context(fs, ft))
    loss.eval()  # BN on running statistics, so repeated calls see the same function

    def term(epoch):
        return loss(loss_inputs(fs, ft, indices=range(4), epoch=epoch))["reviewkd"].item()

    full = term(100)
    # mdistiller: min(epoch / 20, 1) with epochs from 1; LossInputs.epoch counts from 0.
    assert term(0) == pytest.approx(full / 20, rel=1e-6)
    assert term(9) == pytest.approx(full / 2, rel=1e-6)
    assert term(19) == pytest.approx(full, rel=1e-6)


def test_reviewkd_gradients_reach_student_and_fusion_not_teacher():
    fs, ft = _review_features(requires_grad=True)
    loss = ReviewKD()
    loss.setup(feature_context(fs, ft))
    sum(loss(loss_inputs(fs, ft, indices=range(4), epoch=30)).values()).backward()
    for name in loss.student_taps:
        assert fs[name].grad.abs().sum() > 0, name
    for name, t in ft.items():
        assert t.grad is None or torch.count_nonzero(t.grad) == 0, name
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- a few real training steps -----------------------------------------------------------


def test_reviewkd_trains_a_small_student(digits):
    totals, changed = distil_steps(ReviewKD(), *digits, steps=12, batch=32)
    assert all(changed)  # student and every fusion parameter moved
    # Mini-batches differ, so compare the first and last epoch (4 batches) on average.
    assert np.mean(totals[-4:]) < np.mean(totals[:4])


def test_crd_trains_a_small_student(digits):
    totals, changed = distil_steps(_LabelledCRD(digits[1]), *digits, steps=8, batch=32)
    assert all(changed)  # student and both embedding heads moved
    # No decrease is asserted: Z is fixed on the first batch while the memory bank still
    # holds its random start, so the loss first rises as real embeddings fill the bank
    # (as in the authors' code); the exact objective is checked above.
    assert all(np.isfinite(totals))
