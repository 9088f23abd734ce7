"""The plugin author's kit: it passes what the harness can use and names what it cannot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench import DistillationLoss, LossInputs, TapPair
from kdbench.core.plugins import load_plugins
from kdbench.testing import (
    Tapped,
    check_dataset,
    check_executor,
    check_loss,
    check_model,
    tiny_student,
    tiny_teacher,
)

REGISTRY = load_plugins(strict=False).registry


class GoodKD(DistillationLoss):
    """A correct logit loss, the base the broken ones below each spoil in one way."""

    def __init__(self, *, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = temperature

    def _kl(self, zs: torch.Tensor, zt: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_q, p = F.log_softmax(zs / t, dim=1), F.softmax(zt / t, dim=1)
        return F.kl_div(log_q, p, reduction="batchmean") * t * t

    def forward(self, inputs: LossInputs):
        return {"kd": self._kl(inputs.student_logits, inputs.teacher_logits.detach())}


class TeacherGradient(GoodKD):
    def forward(self, inputs: LossInputs):
        return {"kd": self._kl(inputs.student_logits, inputs.teacher_logits)}


class NaNTerm(GoodKD):
    def forward(self, inputs: LossInputs):
        return {"kd": super().forward(inputs)["kd"] * torch.tensor(float("nan"))}


class Float64Term(GoodKD):
    def forward(self, inputs: LossInputs):
        return {"kd": super().forward(inputs)["kd"].double()}


class Unpicklable(GoodKD):
    def __init__(self) -> None:
        super().__init__()
        self.schedule = lambda epoch: 1.0


class LooseTensor(GoodKD):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.ones(1)  # not a buffer: .to("cuda") would leave it on the CPU


class Unseeded(GoodKD):
    def forward(self, inputs: LossInputs):
        import random

        return {"kd": super().forward(inputs)["kd"] * (1 + random.random())}


class WrongTap(GoodKD):
    features = ("layer4",)


@pytest.mark.parametrize(
    ("loss", "says"),
    [
        (TeacherGradient, "sends gradient to the teacher"),
        (NaNTerm, "is nan"),
        (Float64Term, "torch.float64 for float32 inputs"),
        (Unpicklable, "cannot be pickled"),
        (LooseTensor, "register_buffer"),
        (Unseeded, "same seed"),
        (WrongTap, "student tap 'layer4'"),
    ],
)
def test_kit_names_each_broken_loss_contract(loss: type, says: str):
    with pytest.raises(AssertionError, match=says):
        check_loss(loss)


def test_kit_passes_a_correct_loss_and_returns_its_terms():
    terms = check_loss(GoodKD, {"temperature": 2.0})
    assert set(terms) == {"kd"} and terms["kd"] > 0


@pytest.mark.parametrize("name", REGISTRY.names("losses"))
def test_every_builtin_loss_passes_the_kit(name: str):
    check_loss(REGISTRY.get("losses", name).obj)


@pytest.mark.parametrize("name", ["cnn", "mlp", "resnet8", "wrn_16_1", "ShuffleV2"])
def test_builtin_models_pass_the_kit(name: str):
    entry = REGISTRY.get("students", name)
    shapes = check_model(entry.obj, taps=entry.taps_for)
    assert "pool" in shapes and len(shapes["pool"]) == 1


def test_kit_reports_the_shapes_of_cnn_taps():
    shapes = check_model(
        REGISTRY.get("students", "cnn").obj, taps=REGISTRY.get("students", "cnn").taps_for
    )
    # width 16, two stages: 32x32 -> pooled to 16x16 after stage 1; stage2 keeps 16x16.
    assert shapes["stage1"] == (16, 16, 16) and shapes["stage1_pre"] == (16, 32, 32)
    assert shapes["stage2"] == (32, 16, 16) and shapes["pool"] == (32,)


class _TwoStage(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.body = nn.Conv2d(in_channels, 4, 3, stride=2)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


def test_kit_names_a_missing_tap_module():
    with pytest.raises(AssertionError, match="tap 'stage2' names module 'layer2'"):
        check_model(_TwoStage, taps={"stage1": "body", "stage2": "layer2"})


def test_kit_names_a_model_that_ignores_num_classes():
    def fixed(num_classes: int, in_channels: int) -> nn.Module:
        return _TwoStage(10, in_channels)

    with pytest.raises(AssertionError, match="num_classes=7"):
        check_model(fixed)


def test_builtin_dataset_passes_and_uint8_is_required():
    data = check_dataset(REGISTRY.get("datasets", "digits").obj)
    assert data.num_classes == 10

    def floats():
        from dataclasses import replace

        split = replace(data.test)
        object.__setattr__(split, "images", data.test.images.float())
        return replace(data, test=split)

    with pytest.raises(AssertionError, match="test images are torch.float32; store uint8"):
        check_dataset(floats)


def test_local_executor_passes_and_a_lossy_one_is_caught():
    check_executor(REGISTRY.get("executors", "local").obj)

    class DropsGroups:
        def map(self, units, run):
            return (run(u) for u in units if not isinstance(u, list))

    with pytest.raises(AssertionError, match="exactly once per unit"):
        check_executor(DropsGroups)


@pytest.mark.slow
def test_pool_executor_passes_the_kit():
    check_executor(REGISTRY.get("executors", "pool").obj, {"workers": 1, "threads": 1})


def test_fixtures_give_a_deeper_teacher_than_student(
    tiny_teacher: Tapped, tiny_student: Tapped, tiny_dataset
):
    assert "stage3" in tiny_teacher.taps and "stage3" not in tiny_student.taps
    assert len(tiny_dataset.train) == 96 and tiny_dataset.in_channels == 1


def test_fitnets_pairs_the_middle_stages_of_a_deep_teacher_and_shallow_student():
    loss = REGISTRY.get("losses", "fitnets").obj()
    check_loss(REGISTRY.get("losses", "fitnets").obj)
    from kdbench.core.losses import feature_pairs

    pairs = feature_pairs(loss, list(tiny_student().taps), list(tiny_teacher().taps))
    assert pairs == (TapPair("stage1", "stage2"),)


def test_fitnets_distils_the_tap_pair_asked_for():
    fitnets = REGISTRY.get("losses", "fitnets").obj
    terms = check_loss(fitnets, {"hint": "stage2", "teacher_hint": "stage3"})
    assert set(terms) == {"ce", "fitnets"}
    loss = fitnets(hint="stage2", teacher_hint="stage3")
    from kdbench.core.losses import feature_pairs

    assert feature_pairs(loss, list(tiny_student().taps), list(tiny_teacher().taps)) == (
        TapPair("stage2", "stage3"),
    )


def test_the_pytest_plugin_module_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, kdbench.testing.fixtures; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_sp_compares_the_last_stage_of_each_network_whatever_their_depths():
    from kdbench.core.losses import feature_pairs

    sp = REGISTRY.get("losses", "sp").obj
    pairs = feature_pairs(sp(), list(tiny_student().taps), list(tiny_teacher().taps))
    assert pairs == (TapPair("stage2", "stage3"),)
    assert feature_pairs(sp(layer="stage1"), ["stage1", "stage2"], ["stage1", "stage2"]) == (
        TapPair("stage1", "stage1"),
    )
