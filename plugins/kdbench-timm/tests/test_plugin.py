"""The timm plugin module on its own: registration, factories, taps and weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from kdbench_timm import plugin
from torch import nn

from kdbench import KdbenchError
from kdbench.core.registry import Entry, Registry
from kdbench.testing import FeatureTaps


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry()
    plugin.register_models(register=registry.model_registrar("timm"))
    return registry


def test_every_timm_name_is_a_teacher_and_a_student(registry: Registry):
    expected = sorted(f"timm/{name}" for name in timm.list_models())
    assert registry.names("teachers") == expected
    assert registry.names("students") == expected
    entry = registry.get("students", "timm/resnet18")
    assert entry.description == "timm resnet18 (timm.create_model)"
    assert entry.params == {"pretrained": False, "checkpoint": None}
    assert entry.accepts_any  # drop_rate and the like go through to timm


def test_factory_fits_the_dataset_and_passes_extra_params(registry: Registry):
    factory = registry.get("students", "timm/resnet10t").obj
    grey = factory(num_classes=10, in_channels=1, drop_rate=0.25)
    assert grey.drop_rate == 0.25
    assert grey.get_classifier().out_features == 10
    assert grey(torch.randn(2, 1, 8, 8)).shape == (2, 10)  # digits-sized grey images
    colour = factory(num_classes=7, in_channels=3)
    assert colour(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize(
    ("name", "params", "size", "stages", "pool"),
    [
        ("resnet18", {}, 32, ["act1", "layer1", "layer2", "layer3", "layer4"], "fc:in"),
        (
            "mobilenetv3_small_050",
            {},
            32,
            ["bn1", "blocks.0", "blocks.1", "blocks.3", "blocks.5"],
            "classifier:in",
        ),
        (
            "efficientnet_b0",
            {},
            32,
            ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"],
            "classifier:in",
        ),
        (
            "vit_tiny_patch16_224",
            {"img_size": 32},
            32,
            [f"blocks.{i}" for i in range(12)],
            "head:in",
        ),
        ("convnext_atto", {}, 32, [f"stages.{i}" for i in range(4)], "head.fc:in"),
    ],
)
def test_taps_follow_feature_info_and_are_collected(
    registry: Registry, name: str, params: dict, size: int, stages: list[str], pool: str
):
    entry: Entry = registry.get("teachers", f"timm/{name}")
    model = entry.obj(num_classes=10, in_channels=1, **params).eval()
    taps = entry.taps_for(model)
    assert taps == {f"stage{k}": path for k, path in enumerate(stages, 1)} | {"pool": pool}
    with FeatureTaps(model, taps, taps) as hooks, torch.no_grad():
        model(torch.randn(2, 1, size, size))
    features = hooks.pop()
    assert set(features) == set(taps)
    assert features["pool"].shape == (2, model.get_classifier().in_features)
    assert all(features[f"stage{k}"].shape[0] == 2 for k in range(1, len(stages) + 1))


class _Odd(nn.Module):
    """A model whose feature_info names a module it lacks and whose head is a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 3)
        self.head = nn.Conv2d(4, 2, 1)
        self.feature_info = [{"module": "body"}, {"module": "stem.missing"}]

    def get_classifier(self) -> nn.Module:
        return self.head


def test_taps_leave_out_what_the_model_cannot_honour():
    # A partial level list would renumber stageK, and a conv head has no (B, D) input.
    assert plugin.feature_taps(_Odd()) == {}


@pytest.fixture
def offline_empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network and empty weight caches, whatever this machine has cached."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # The hub client reads these once at import; patch the values it uses.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


@pytest.mark.usefixtures("offline_empty_caches")
def test_pretrained_offline_is_a_clear_error():
    with pytest.raises(KdbenchError) as info:
        plugin.build("resnet18", 10, 3, pretrained=True)
    message = str(info.value)
    assert "timm model 'resnet18'" in message
    assert "HF_HOME" in message and "TORCH_HOME" in message and "checkpoint = " in message


@pytest.mark.usefixtures("offline_empty_caches")
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_file_loads_its_weights(tmp_path: Path, suffix: str):
    source = timm.create_model("resnet10t")  # ImageNet layout: 1000 classes, RGB
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)

    model = plugin.build("resnet10t", 10, 1, checkpoint=str(path))
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    # timm adapts the stem to one channel (summing RGB) and drops the 1000-class head.
    stem = source.conv1[0].weight.sum(dim=1, keepdim=True)
    assert torch.allclose(model.conv1[0].weight, stem)
    assert model.fc.out_features == 10


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path):
    with pytest.raises(KdbenchError, match="is not a file"):
        plugin.build("resnet10t", 10, 1, checkpoint=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(KdbenchError, match="could not load checkpoint .* 'resnet10t'"):
        plugin.build("resnet10t", 10, 1, checkpoint=str(junk))


@pytest.mark.usefixtures("offline_empty_caches")
def test_unknown_model_parameter_is_not_reported_as_a_weights_problem():
    with pytest.raises(TypeError, match="bogus"):
        plugin.build("resnet10t", 10, 1, pretrained=True, bogus=1)


@pytest.mark.parametrize("name", ["resnet10t", "mobilenetv3_small_050", "convnext_atto"])
def test_timm_models_keep_the_harness_contract(registry: Registry, name: str):
    from kdbench.testing import check_model

    entry = registry.get("students", f"timm/{name}")
    shapes = check_model(entry.obj, taps=entry.taps_for)
    assert shapes["pool"] == (entry.obj(num_classes=7, in_channels=3).get_classifier().in_features,)
