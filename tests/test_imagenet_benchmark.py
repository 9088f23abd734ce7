"""benchmarks/imagenet.toml, its MobileNetV1 student and its published rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from kdbench.builtin.models_mobilenetv1 import MobileNetV1
from kdbench.cli import cli
from kdbench.engine.features import FeatureTaps
from kdbench.reporting.reference import load_reference

REPO = Path(__file__).resolve().parents[1]

# mdistiller mdistiller/models/imagenet/mobilenetv1.py: conv_bn(3, 32, 2), then conv_dw
# blocks of these (in, out, stride); its get_stage_channels() is [128, 256, 512, 1024].
MDISTILLER_BLOCKS = [
    (32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
    (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1),
    (512, 1024, 2), (1024, 1024, 1),
]  # fmt: skip


def test_mobilenet_v1_has_mdistillers_layers_and_parameter_count():
    model = MobileNetV1(num_classes=1000)
    stem = model.model[0]
    assert (stem[0].in_channels, stem[0].out_channels, stem[0].stride) == (3, 32, (2, 2))
    for i, (inp, out, stride) in enumerate(MDISTILLER_BLOCKS, start=1):
        depthwise, pointwise = model.model[i][0], model.model[i][3]
        assert (
            depthwise.groups == depthwise.in_channels == inp and depthwise.stride == (stride,) * 2
        )
        assert (pointwise.in_channels, pointwise.out_channels) == (inp, out)
        assert pointwise.kernel_size == (1, 1)
        assert [type(m).__name__ for m in model.model[i]] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2
    assert len(model.model) == 15 and model.fc.in_features == 1024
    assert sum(p.numel() for p in model.parameters()) == 4_231_976


def test_mobilenet_v1_taps_give_mdistillers_stage_shapes():
    from kdbench.builtin.models_mobilenetv1 import TAPS

    model = MobileNetV1(num_classes=10).eval()
    taps = FeatureTaps(model, TAPS, list(TAPS))
    with torch.no_grad(), taps:
        model(torch.zeros(1, 3, 224, 224))
    shapes = {name: tuple(t.shape[1:]) for name, t in taps.pop().items()}
    # mdistiller's reviewkd.yaml for r50_mv1: SHAPES [1, 7, 14, 28, 56], IN_CHANNELS
    # [128, 256, 512, 1024, 1024]
    stages = {
        "stage1": (128, 56, 56), "stage2": (256, 28, 28), "stage3": (512, 14, 14),
        "stage4": (1024, 7, 7),
    }  # fmt: skip
    assert shapes == stages | {f"{k}_pre": v for k, v in stages.items()} | {"pool": (1024, 1, 1)}


def test_published_imagenet_rows_are_read_with_their_sources():
    rows = [r for r in load_reference(REPO / "results" / "reference") if r.dataset == "imagenet"]
    figures = {(r.teacher, r.student, r.method): r.top1 for r in rows}
    pair = ("tv/resnet34", "tv/resnet18")
    methods = ("teacher", "student", "kd", "dkd", "dist", "reviewkd")
    assert {m: figures[(*pair, m)] for m in methods} == {
        "teacher": 73.31, "student": 69.76, "kd": 71.03, "dkd": 71.70, "dist": 72.07,
        "reviewkd": 71.61,
    }  # fmt: skip
    assert all(r.source for r in rows)


def fake_imagenet(root: Path, classes: int = 1000) -> None:
    """One tiny JPEG per class and split, hard-linked: the layout, not the pixels."""
    image = root / "image.JPEG"
    root.mkdir(parents=True)
    Image.new("RGB", (20, 16), (120, 60, 30)).save(image)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            os.link(image, folder / "a.JPEG")


@pytest.mark.slow
def test_imagenet_benchmark_validates_against_a_fake_image_folder(tmp_path: Path):
    import torchvision

    (tmp_path / "benchmarks").mkdir()
    text = (REPO / "benchmarks" / "imagenet.toml").read_text()
    root = tmp_path / "data" / "imagenet"
    assert 'root = "data/imagenet/"' in text
    bench = tmp_path / "benchmarks" / "imagenet.toml"
    bench.write_text(text.replace('root = "data/imagenet/"', f'root = "{root}"'))
    fake_imagenet(root)
    (root / "teachers").mkdir()
    for name, file in (
        ("resnet34", "resnet34-b627a593.pth"),
        ("resnet50", "resnet50-0676ba61.pth"),
    ):
        torch.save(torchvision.models.get_model(name).state_dict(), root / "teachers" / file)
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    assert result.exit_code == 0, result.output
