import torch
from kdbench_example_loss.plugin import LogitMSE

from kdbench import LossInputs


def test_logit_mse_matches_hand_computed_value():
    student = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    targets = torch.tensor([1, 0])
    inputs = LossInputs(student, teacher, targets, torch.arange(2), epoch=0, epochs=1)
    terms = LogitMSE(beta=2.0)(inputs)
    # squared errors: 0, 4, 4, 0 -> mean 2; times beta 2
    assert torch.isclose(terms["logit_mse"], torch.tensor(4.0))
    ce = (-torch.log_softmax(student, 1)[[0, 1], [1, 0]]).mean()
    assert torch.isclose(terms["ce"], ce)


def test_logit_mse_keeps_the_harness_contract():
    from kdbench.testing import check_loss

    terms = check_loss(LogitMSE, {"beta": 0.5})
    assert set(terms) == {"ce", "logit_mse"}
