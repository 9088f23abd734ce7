"""KD and the article's losses against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench import LossInputs
from kdbench.builtin.losses_basic import KD, SoftLabelCE, TemperatureCE
from kdbench.core.losses import CrossEntropy

STUDENT = [[1.0, 2.0, 0.0], [0.5, 0.5, 3.0]]
TEACHER = [[2.0, 1.0, 0.0], [0.0, 1.0, 4.0]]
TARGETS = [0, 2]


def inputs(student=STUDENT, teacher=TEACHER, targets=TARGETS) -> LossInputs:
    return LossInputs(
        torch.tensor(student),
        torch.tensor(teacher),
        torch.tensor(targets),
        torch.arange(len(targets)),
        epoch=0,
        epochs=1,
    )


def softmax(row, t=1.0):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def hand_ce(student, targets):
    return sum(-math.log(softmax(row)[y]) for row, y in zip(student, targets, strict=True)) / len(
        targets
    )


def hand_kl(student, teacher, t):
    """sum_i KL(p_t || p_s) / batch: KLDivLoss's ``batchmean``, not ``mean``."""
    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        p, q = softmax(t_row, t), softmax(s_row, t)
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    return total / len(student)


def hand_soft_ce(student, teacher, t):
    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        p, q = softmax(t_row, t), softmax(s_row, t)
        total -= sum(pi * math.log(qi) for pi, qi in zip(p, q, strict=True))
    return total / len(student)


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_kd_is_t_squared_batchmean_kl_plus_weighted_ce(t):
    terms = KD(temperature=t, alpha=0.9)(inputs())
    assert terms["kd"].item() == pytest.approx(0.9 * t * t * hand_kl(STUDENT, TEACHER, t), rel=1e-5)
    assert terms["ce"].item() == pytest.approx(0.1 * hand_ce(STUDENT, TARGETS), rel=1e-5)


def test_kd_term_is_zero_when_student_equals_teacher():
    terms = KD()(inputs(student=TEACHER))
    assert terms["kd"].item() == pytest.approx(0.0, abs=1e-7)


def test_soft_label_ce_uses_teacher_probabilities_as_targets():
    terms = SoftLabelCE(alpha=0.5)(inputs())
    assert terms["soft_ce"].item() == pytest.approx(
        0.5 * hand_soft_ce(STUDENT, TEACHER, 1.0), rel=1e-5
    )
    assert terms["ce"].item() == pytest.approx(0.5 * hand_ce(STUDENT, TARGETS), rel=1e-5)


def test_temperature_ce_is_kd_plus_the_teacher_entropy():
    t, alpha = 4.0, 0.9
    tce = TemperatureCE(temperature=t, alpha=alpha)(inputs())["tce"].item()
    assert tce == pytest.approx(alpha * t * t * hand_soft_ce(STUDENT, TEACHER, t), rel=1e-5)
    entropy = sum(-sum(p * math.log(p) for p in softmax(row, t)) for row in TEACHER) / 2
    kd = KD(temperature=t, alpha=alpha)(inputs())["kd"].item()
    assert tce - kd == pytest.approx(alpha * t * t * entropy, rel=1e-5)


def test_temperature_ce_and_kd_have_identical_student_gradients():
    grads = []
    for loss in (KD(temperature=3.0, alpha=1.0), TemperatureCE(temperature=3.0, alpha=1.0)):
        batch = inputs()
        logits = batch.student_logits.clone().requires_grad_(True)
        batch = LossInputs(logits, batch.teacher_logits, batch.targets, batch.indices, 0, 1)
        sum(loss(batch).values()).backward()
        grads.append(logits.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_baseline_needs_no_teacher_and_is_plain_cross_entropy():
    assert CrossEntropy.needs_teacher is False
    batch = LossInputs(torch.tensor(STUDENT), None, torch.tensor(TARGETS), torch.arange(2), 0, 1)
    assert CrossEntropy()(batch)["ce"].item() == pytest.approx(hand_ce(STUDENT, TARGETS), rel=1e-6)


@pytest.mark.parametrize("loss", [KD(), SoftLabelCE(), TemperatureCE()], ids=type)
def test_teacher_gets_no_gradient(loss):
    batch = inputs()
    student = batch.student_logits.clone().requires_grad_(True)
    teacher = batch.teacher_logits.clone().requires_grad_(True)
    sum(loss(LossInputs(student, teacher, batch.targets, batch.indices, 0, 1)).values()).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
