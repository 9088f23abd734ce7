"""The CIFAR model zoo: reference sizes and FLOPs, shapes, feature taps, training, loading."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kdbench.builtin import cifar_zoo
from kdbench.builtin.cifar_zoo import MODELS
from kdbench.core.plugins import BUILTIN_PLUGINS, load_plugins, make_plugin_manager
from kdbench.core.registry import Registry
from kdbench.engine.features import FeatureTaps

REFERENCE = Path(__file__).parent / "data" / "cifar_zoo_params.csv"
RESULTS = Path(__file__).parents[1] / "results" / "reference"
with REFERENCE.open(newline="") as _file:
    REFERENCE_ROWS = list(csv.DictReader(_file))

# Shapes per image of the reference's ``model(x, is_feat=True)`` list for a 32x32 input:
# index 0 is the stem, 1..N the stages, the last the pooled embedding.
FEATURE_SHAPES: dict[str, list[tuple[int, ...]]] = {}
with (RESULTS / "repdistiller_feature_shapes.csv").open(newline="") as _file:
    for _row in csv.DictReader(_file):
        _shape = tuple(int(n) for n in _row["shape_per_image"].split("x"))
        FEATURE_SHAPES.setdefault(_row["model"], []).append(_shape)

# Stages that end without a ReLU: the pre-activation tap is the stage output itself.
LINEAR_STAGES = {"MobileNetV2"}
# Pre-activation networks: stageK is the raw group output, stageK_act its activation.
PREACT = {"wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batches of two gain nothing from intra-op threads, and on a busy machine the
    thread hand-offs cost more than the convolutions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_model_has_reference_feature_shapes():
    assert set(FEATURE_SHAPES) == set(MODELS)


def test_reference_covers_only_zoo_models():
    assert len(REFERENCE_ROWS) == 15
    assert {row["model"] for row in REFERENCE_ROWS} <= set(MODELS)


@pytest.mark.parametrize("row", REFERENCE_ROWS, ids=lambda row: row["model"])
def test_params_and_flops_match_reference(row):
    model = MODELS[row["model"]](num_classes=100, in_channels=3).eval()
    assert sum(p.numel() for p in model.parameters()) == int(row["params_100_classes"])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    gflops = counter.get_total_flops() / 1e9
    assert round(gflops, 3) == pytest.approx(float(row["fwd_gflops_per_32x32_image"]), abs=1e-9)


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_on_cifar_and_grey_input(name):
    torch.manual_seed(0)
    with torch.no_grad():
        colour = MODELS[name](num_classes=100, in_channels=3).eval()
        assert colour(torch.randn(2, 3, 32, 32)).shape == (2, 100)
        grey = MODELS[name](num_classes=10, in_channels=1).eval()
        assert grey(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", list(MODELS))
def test_in_channels_only_changes_the_first_conv(name):
    colour = MODELS[name](num_classes=10, in_channels=3)
    grey = MODELS[name](num_classes=10, in_channels=1)
    first = next(m for m in colour.modules() if isinstance(m, nn.Conv2d))
    kernel = first.kernel_size[0] * first.kernel_size[1]
    extra = 2 * first.out_channels * kernel
    assert sum(p.numel() for p in colour.parameters()) - extra == sum(
        p.numel() for p in grey.parameters()
    )


def _tapped(name: str) -> tuple[nn.Module, dict[str, str], dict[str, torch.Tensor]]:
    model = MODELS[name](num_classes=100, in_channels=3).eval()
    taps = cifar_zoo.feature_taps(model)
    torch.manual_seed(0)
    with FeatureTaps(model, taps, taps) as tapped, torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    return model, taps, tapped.pop()


@pytest.mark.parametrize("name", list(MODELS))
def test_feature_taps_have_the_reference_shapes(name):
    model, taps, features = _tapped(name)
    stem_shape, *stage_shapes, pool_shape = FEATURE_SHAPES[name]
    stages = range(1, len(stage_shapes) + 1)
    expected = {"stem", "pool"} | {f"stage{k}" for k in stages} | {f"stage{k}_pre" for k in stages}
    if name in PREACT:
        expected |= {f"stage{k}_act" for k in stages}
    assert set(taps) == set(features) == expected
    assert features["stem"].shape == (2, *stem_shape)
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert features["pool"].shape == (2, *pool_shape) == (2, classifier.in_features)
    for k, shape in enumerate(stage_shapes, start=1):
        assert features[f"stage{k}"].shape == features[f"stage{k}_pre"].shape == (2, *shape)


@pytest.mark.parametrize("name", sorted(set(MODELS) - PREACT))
def test_stage_taps_are_activated_stage_outputs(name):
    _, _, features = _tapped(name)
    for k in range(1, len(FEATURE_SHAPES[name]) - 1):
        out, pre = features[f"stage{k}"], features[f"stage{k}_pre"]
        if name in LINEAR_STAGES:
            assert torch.equal(out, pre)
        else:
            # A real pre-activation: negative somewhere, and the stage output is its ReLU
            # (an in-place ReLU would have overwritten it).
            assert (pre < 0).any()
            assert (out >= 0).all()
            assert torch.equal(out, torch.relu(pre))


@pytest.mark.parametrize("name", sorted(PREACT))
def test_wrn_stage_taps_are_raw_group_outputs(name):
    """As in the reference's feature list: signed block-group sums, before the BN-ReLU
    that the next group (or the head) applies; ``stageK_act`` is after it."""
    model, _, features = _tapped(name)
    norms = [model.block2.layer[0].bn1, model.block3.layer[0].bn1, model.bn1]
    for k, norm in enumerate(norms, start=1):
        raw, pre, act = (features[f"stage{k}{suffix}"] for suffix in ("", "_pre", "_act"))
        assert (raw < 0).any()
        with torch.no_grad():
            assert torch.equal(pre, norm(raw))
        assert torch.equal(act, torch.relu(pre))


def test_shufflev2_passes_only_activated_channels_through():
    # BasicUnit applies its ReLU after concat; that equals the reference's branch-only
    # ReLU only because the passed-through half is already non-negative.
    from kdbench.builtin.cifar_zoo.shufflenetv2 import BasicUnit

    model = MODELS["ShuffleV2"](num_classes=10, in_channels=3).eval()
    inputs = []
    for unit in model.modules():
        if isinstance(unit, BasicUnit):
            unit.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert len(inputs) == 13
    assert all((x >= 0).all() for x in inputs)


@pytest.mark.parametrize("name", list(MODELS))
def test_one_sgd_step_changes_parameters(name):
    torch.manual_seed(0)
    model = MODELS[name](num_classes=10, in_channels=3).train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([1, 7]))
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    # The classifier always receives a gradient, so it must have moved.
    assert not torch.equal(before[-2], after[-2])


def _zoo_registry() -> Registry:
    pm = make_plugin_manager()
    pm.register(cifar_zoo, name="cifar_zoo")
    registry = Registry()
    pm.hook.register_models(register=registry.model_registrar("cifar_zoo"))
    return registry


def test_plugin_registers_every_model_as_teacher_and_student():
    registry = _zoo_registry()
    for kind in ("teachers", "students"):
        assert registry.names(kind) == sorted(MODELS)
        for entry in registry.entries(kind):
            assert entry.description  # the factory docstring's first line
            assert entry.params == {}
            model = entry.obj(num_classes=10, in_channels=3)
            assert entry.taps_for(model) == model.feature_taps()


def test_zoo_is_a_builtin_plugin():
    assert "kdbench.builtin.cifar_zoo" in BUILTIN_PLUGINS
    missing = []
    for module in BUILTIN_PLUGINS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            missing.append(module)
    if missing:
        pytest.skip(f"other built-in plugins are not importable yet: {', '.join(missing)}")
    registry = load_plugins(strict=True).registry
    for kind in ("teachers", "students"):
        assert set(MODELS) <= set(registry.names(kind))
        assert all(registry.get(kind, name).plugin == "cifar_zoo" for name in MODELS)
