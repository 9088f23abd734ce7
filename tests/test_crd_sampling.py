"""CRD's negatives are drawn as RepDistiller draws them: without replacement from the pool.

RepDistiller's ``CIFAR100InstanceSample`` (mode ``exact``) takes, per sample,
``np.random.choice(cls_negative[target], k, replace=k > len(cls_negative[target]))``:
k distinct samples of the other classes, repeats only where the pool is smaller than k.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from scipy.stats import chisquare

from conftest import feature_context, rand
from kdbench.builtin.losses_crd import CRD


def _crd(labels: torch.Tensor, negatives: int, **params) -> CRD:
    fs, ft = {"pool": rand(1, 2, 4)}, {"pool": rand(2, 2, 4)}
    loss = CRD(negatives=negatives, feature_dim=4, **params)
    loss.setup(replace(feature_context(fs, ft, num_train=len(labels)), train_labels=labels))
    return loss


def _has_repeats(rows: torch.Tensor) -> torch.Tensor:
    """Per row: does any index appear twice?"""
    ordered = rows.sort(dim=1).values
    return (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)


# CIFAR-100's training split: 100 classes of 500 samples, in a shuffled order.
_cifar_labels = (torch.arange(50_000) % 100)[
    torch.randperm(50_000, generator=torch.Generator().manual_seed(0))
]


@pytest.mark.parametrize("sampling", ["other_class", "uniform"])
def test_crd_negatives_at_cifar100_size_are_distinct_and_exclude_the_anchor(sampling):
    loss = _crd(_cifar_labels, 16384, negative_sampling=sampling)
    torch.manual_seed(0)
    indices = torch.randperm(50_000)[:64]  # one batch of 64
    drawn = loss.sample_negatives(indices)
    assert drawn.shape == (64, 16384)
    assert drawn.min() >= 0 and drawn.max() < 50_000
    # With replacement, 16384 draws out of 49500 repeat about 15% of the time in every row.
    assert not _has_repeats(drawn).any()
    assert not (drawn == indices.unsqueeze(1)).any()  # the positive is never a negative
    if sampling == "other_class":
        assert not (_cifar_labels[drawn] == _cifar_labels[indices].unsqueeze(1)).any()


# Unequal classes, shuffled: 4, 8, 12 and 16 samples of classes 0..3 (pools 36, 32, 28, 24).
_uneven = torch.tensor([0] * 4 + [1] * 8 + [2] * 12 + [3] * 16)[
    torch.randperm(40, generator=torch.Generator().manual_seed(3))
]


@pytest.mark.parametrize("anchor_class", [0, 3])
def test_crd_distinct_negatives_are_uniform_over_the_other_classes(anchor_class):
    loss = _crd(_uneven, 20)  # 20 of a pool of 36 (class 0) or 24 (class 3)
    anchors = torch.nonzero(_uneven == anchor_class).flatten().repeat(3000 // 4)
    torch.manual_seed(2)
    drawn = loss.sample_negatives(anchors)
    assert not _has_repeats(drawn).any()
    counts = torch.bincount(drawn.flatten(), minlength=40)
    others = _uneven != anchor_class
    assert counts[~others].sum() == 0
    # every sample of another class equally likely: each is in 20 / pool of the rows
    assert chisquare(counts[others].numpy()).pvalue > 1e-3
    expected = len(anchors) * 20 / int(others.sum())
    assert (counts[others] - expected).abs().max() < 0.1 * expected


def test_crd_repeats_negatives_only_where_the_pool_is_smaller_than_k():
    loss = _crd(_uneven, 30)  # pools: 36, 32, 28 and 24
    indices = torch.arange(40).repeat(20)
    torch.manual_seed(4)
    drawn = loss.sample_negatives(indices)
    short = _uneven[indices] >= 2  # classes 2 and 3: 28 and 24 others for 30 draws
    assert _has_repeats(drawn)[short].all() and not _has_repeats(drawn)[~short].any()
    assert not (_uneven[drawn] == _uneven[indices].unsqueeze(1)).any()
    for c, pool in ((2, 28), (3, 24)):  # the draws with replacement still cover the pool
        rows = drawn[_uneven[indices] == c]
        assert len(rows.unique()) == pool


def test_crd_negatives_follow_the_seed():
    loss = _crd(_uneven, 20)
    indices = torch.arange(40)
    draws = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        draws.append(loss.sample_negatives(indices))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_crd_sampling_in_blocks_of_rows_keeps_negatives_distinct(monkeypatch):
    monkeypatch.setattr("kdbench.builtin.losses_crd._KEY_BUDGET", 3 * 36)  # 3 rows a block
    loss = _crd(_uneven, 20)
    indices = torch.arange(40)
    drawn = loss.sample_negatives(indices)
    assert drawn.shape == (40, 20) and not _has_repeats(drawn).any()
    assert not (_uneven[drawn] == _uneven[indices].unsqueeze(1)).any()
