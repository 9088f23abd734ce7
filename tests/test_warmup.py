"""The one warm-up rule of DKD and ReviewKD: mdistiller's, with epochs counted from 0."""

from __future__ import annotations

import pytest

from conftest import feature_context, loss_inputs, rand
from kdbench.builtin.losses_logit import DKD
from kdbench.builtin.losses_reviewkd import ReviewKD
from kdbench.core.functional import warmup_factor


@pytest.mark.parametrize(
    ("warmup", "factors"),
    [
        # mdistiller's epochs 1, 2, ... are kdbench's 0, 1, ...: min(e / warmup, 1)
        (4, [1 / 4, 2 / 4, 3 / 4, 1.0, 1.0, 1.0]),
        (20, [1 / 20, 2 / 20, 3 / 20, 4 / 20, 5 / 20, 6 / 20]),
        (1, [1.0] * 6),  # mdistiller's ImageNet setting: full weight from the first epoch
        (0, [1.0] * 6),  # no ramp
    ],
)
def test_warmup_factor_is_mdistillers_with_zero_based_epochs(warmup, factors):
    assert [warmup_factor(epoch, warmup) for epoch in range(6)] == pytest.approx(factors)


def _dkd(warmup):
    """DKD's KD terms (TCKD + NCKD) at an epoch."""
    loss = DKD(warmup=warmup)
    return lambda epoch: sum(
        loss(loss_inputs({}, {}, indices=range(6), epoch=epoch))[k].item() for k in ("tckd", "nckd")
    )


def _reviewkd(warmup):
    """ReviewKD's review term at an epoch."""
    fs = {"stage1": rand(1, 4, 8, 4, 4), "pool": rand(2, 4, 8)}
    ft = {"stage1": rand(3, 4, 8, 4, 4), "pool": rand(4, 4, 8)}
    loss = ReviewKD(warmup=warmup)
    loss.setup(feature_context(fs, ft))
    loss.eval()  # BN on running statistics: every call computes the same function
    return lambda epoch: loss(loss_inputs(fs, ft, indices=range(4), epoch=epoch))["reviewkd"].item()


@pytest.mark.parametrize("build", [_dkd, _reviewkd])
def test_dkd_and_reviewkd_ramp_by_the_same_factors(build):
    term = build(3)
    full = term(50)
    assert full > 0
    ramp = [term(epoch) / full for epoch in range(5)]
    assert ramp == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0], rel=1e-6)
