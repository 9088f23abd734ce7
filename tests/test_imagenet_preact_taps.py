"""Pre-activation taps of the ImageNet models, and ReviewKD fusing them as mdistiller does.

mdistiller's ImageNet ResNets and MobileNetV1 return ``preact_feats``: each stage's output
before its closing ReLU. ``stageK_pre`` must be exactly that value: ``relu(stageK_pre)``
is ``stageK``, and it is signed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import feature_context, loss_inputs
from kdbench.builtin.losses_reviewkd import ReviewKD
from kdbench.core.features import FeatureTaps
from kdbench.core.plugins import load_plugins

REPO = Path(__file__).resolve().parents[1]
IMAGENET_MODELS = ("tv/resnet18", "tv/resnet34", "tv/resnet50", "mobilenet_v1")


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


def _features(registry, name: str, model: torch.nn.Module, size: int = 64):
    taps = registry.get("students", name).taps_for(model)
    collect = FeatureTaps(model, taps, list(taps))
    torch.manual_seed(0)
    with torch.no_grad(), collect:
        logits = model(torch.randn(2, 3, size, size))
    return logits, collect.pop()


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_stage_pre_taps_are_the_stage_outputs_before_their_relu(registry, name):
    torch.manual_seed(1)
    model = registry.get("students", name).obj(num_classes=10, in_channels=3)
    model.train()  # batch statistics: signed pre-activations, as in training
    _, features = _features(registry, name, model)
    for k in range(1, 5):
        out, pre = features[f"stage{k}"], features[f"stage{k}_pre"]
        assert pre.shape == out.shape
        assert pre.min() < 0 < pre.max()
        assert torch.equal(torch.relu(pre), out)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_tapped_resnets_are_torchvisions_function_and_state_dict(registry, name):
    model = registry.get("teachers", f"tv/{name}").obj(num_classes=1000, in_channels=3).eval()
    reference = torchvision.models.get_model(name).eval()
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    reference.load_state_dict(model.state_dict())
    logits, _ = _features(registry, f"tv/{name}", model)
    torch.manual_seed(0)
    with torch.no_grad():
        assert torch.equal(logits, reference(torch.randn(2, 3, 64, 64)))


def test_imagenet_reviewkd_fuses_pre_activations_of_student_and_teacher(registry):
    recipe = tomllib.loads((REPO / "benchmarks" / "imagenet.toml").read_text())
    params = recipe["losses"]["reviewkd"]
    assert params["student_preact"] is True  # mdistiller's STU_PREACT
    for student, teacher in (("tv/resnet18", "tv/resnet34"), ("mobilenet_v1", "tv/resnet50")):
        fs, ft = (
            _features(registry, name, registry.get(kind, name).obj(num_classes=10, in_channels=3))[
                1
            ]
            for kind, name in (("students", student), ("teachers", teacher))
        )
        loss = ReviewKD(**params)
        pre = [f"stage{k}_pre" for k in range(1, 5)]
        wanted = loss.required_features([n for n in fs if n in ft])
        assert set(wanted) == {*pre, "pool"}
        # as the harness does: only the taps asked for are measured and handed over
        fs, ft = ({n: side[n] for n in wanted} for side in (fs, ft))
        loss.setup(feature_context(fs, ft))
        assert loss.student_taps == loss.teacher_taps == [*pre, "pool"]
        terms = loss(loss_inputs(fs, ft, indices=range(2), epoch=0))
        assert torch.isfinite(terms["reviewkd"]) and terms["reviewkd"] > 0


def test_reviewkd_student_preact_is_off_by_default_as_in_mdistillers_cifar_configs():
    fs = {"stage1": torch.zeros(1, 8, 4, 4), "stage1_pre": torch.zeros(1, 8, 4, 4),
          "pool": torch.zeros(1, 8)}  # fmt: skip
    loss = ReviewKD()
    loss.setup(feature_context(fs, dict(fs)))
    assert loss.student_taps == ["stage1", "pool"]
    assert loss.teacher_taps == ["stage1_pre", "pool"]
