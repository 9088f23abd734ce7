"""``kdbench new-plugin``: a plugin distribution that installs and passes its tests as written.

One template per kind (loss, model, dataset): a working example to edit, registered
through the entry point, with a test that runs the kit (:mod:`kdbench.testing`) on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from kdbench.core.errors import KdbenchError

KINDS = ("loss", "model", "dataset")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A kdbench $kind plugin: $name."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["$requires"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This is all it takes for kdbench to find the plugin after `pip install`.
[project.entry-points.kdbench]
$module = "$module.plugin"

[tool.setuptools.packages.find]
where = ["src"]
"""

README = """\
# $dist

A kdbench $kind plugin registering `$name`.

    pip install -e .          # kdbench finds it through its entry point
    kdbench show $kind $name  # what kdbench sees
    pytest                    # the plugin's tests, with kdbench's kit

Edit `src/$module/plugin.py`; `tests/test_plugin.py` checks it keeps the contract the
harness relies on (see kdbench's docs/plugins.md).
"""


def requires() -> str:
    """The kdbench a new plugin is written against: this minor series (docs/plugins.md,
    "API policy"), or any kdbench where this one's version is unknown."""
    from kdbench import __version__

    found = re.match(r"(\d+)\.(\d+)\.", __version__)
    if found is None:
        return "kdbench"
    major, minor = int(found[1]), int(found[2])
    return f"kdbench>={major}.{minor},<{major}.{minor + 1}"


LOSS = '''\
"""The `$name` distillation loss, registered through the `kdbench` entry point."""

from __future__ import annotations

import torch.nn.functional as F

from kdbench import DistillationLoss, LossInputs, Probability, Temperature, hookimpl


class Loss(DistillationLoss):
    """$name: (1 - alpha) * CE + alpha * T^2 * KL(teacher || student) at temperature T."""

    def __init__(self, *, temperature: Temperature = 4.0, alpha: Probability = 0.9) -> None:
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha

    def forward(self, inputs: LossInputs):
        t = self.temperature
        log_q = F.log_softmax(inputs.student_logits.float() / t, dim=1)
        p = F.softmax(inputs.teacher_logits.detach().float() / t, dim=1)
        kl = F.kl_div(log_q, p, reduction="batchmean") * t * t
        return {
            "ce": (1 - self.alpha) * F.cross_entropy(inputs.student_logits.float(), inputs.targets),
            "$name": self.alpha * kl,
        }


@hookimpl
def register_losses(register):
    register("$name", Loss)
'''

LOSS_TEST = """\
from $module.plugin import Loss

from kdbench.testing import check_loss


def test_loss_keeps_the_harness_contract():
    terms = check_loss(Loss, {"temperature": 2.0, "alpha": 0.5})
    assert set(terms) == {"ce", "$name"}


def test_alpha_zero_is_plain_cross_entropy(tiny_student, tiny_teacher):
    terms = check_loss(Loss, {"alpha": 0.0}, student=tiny_student, teacher=tiny_teacher)
    assert terms["$name"] == 0
"""

MODEL = '''\
"""The `$name` model, registered as teacher and student through the `kdbench` entry point."""

from __future__ import annotations

from torch import nn

from kdbench import PositiveInt, hookimpl


class Net(nn.Module):
    """Two conv stages (the second at half resolution), global pooling, a linear head."""

    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stage2(self.stage1(x))))


def build(num_classes: int, in_channels: int, *, width: PositiveInt = 16) -> Net:
    """$name: two conv stages of `width` and twice `width` channels."""
    return Net(num_classes, in_channels, width)


# Feature taps: what feature-based losses may ask for (docs/models.md names the meanings).
TAPS = {"stage1": "stage1", "stage2": "stage2", "pool": "pool"}


@hookimpl
def register_models(register):
    register("$name", build, taps=TAPS)
'''

MODEL_TEST = """\
from $module.plugin import TAPS, build

from kdbench.testing import check_model


def test_model_keeps_the_harness_contract():
    shapes = check_model(build, {"width": 4}, taps=TAPS)
    assert shapes == {"stage1": (4, 32, 32), "stage2": (8, 16, 16), "pool": (8,)}
"""

DATASET = '''\
"""The `$name` dataset, registered through the `kdbench` entry point."""

from __future__ import annotations

import torch

from kdbench import DatasetSplits, NonNegativeInt, PositiveInt, Split, hookimpl


def _images(count: int, generator: torch.Generator) -> Split:
    """Two classes of 16x16 grey images: bright left or bright right half, plus noise."""
    labels = torch.randint(0, 2, (count,), generator=generator)
    images = torch.randint(0, 64, (count, 1, 16, 16), generator=generator)
    for i, label in enumerate(labels.tolist()):
        images[i, :, :, 8 * label : 8 * label + 8] += 160
    return Split(images.to(torch.uint8), labels)


def load(*, train: PositiveInt = 256, test: PositiveInt = 64, seed: NonNegativeInt = 0):
    """$name: replace with code that reads your files into uint8 (N, C, H, W) tensors."""
    generator = torch.Generator().manual_seed(seed)
    train_split, test_split = _images(train, generator), _images(test, generator)
    pixels = train_split.images.float() / 255
    return DatasetSplits(
        train=train_split,
        test=test_split,
        classes=("left", "right"),
        mean=(pixels.mean().item(),),
        std=(pixels.std().item(),),
    )


@hookimpl
def register_datasets(register):
    register("$name", load)
'''

DATASET_TEST = """\
from $module.plugin import load

from kdbench.testing import check_dataset


def test_dataset_keeps_the_harness_contract():
    data = check_dataset(load, {"train": 32, "test": 8})
    assert (len(data.train), len(data.test), data.num_classes) == (32, 8, 2)
"""

TEMPLATES = {
    "loss": (LOSS, LOSS_TEST),
    "model": (MODEL, MODEL_TEST),
    "dataset": (DATASET, DATASET_TEST),
}


def new_plugin(kind: str, name: str, parent: Path) -> Path:
    """Write distribution ``kdbench-<name>`` under ``parent`` and return its folder."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise KdbenchError(
            f"new-plugin: NAME '{name}' must be lower-case letters, digits and '_', "
            "starting with a letter (it becomes a Python module)"
        )
    module = f"kdbench_{name}"
    dist = f"kdbench-{name.replace('_', '-')}"
    folder = parent / dist
    if folder.exists():
        raise KdbenchError(f"new-plugin: {folder} already exists; pick another NAME or folder")
    words = {"name": name, "module": module, "dist": dist, "kind": kind, "requires": requires()}
    plugin, test = TEMPLATES[kind]
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{module}/__init__.py": '"""kdbench plugin $name."""\n',
        f"src/{module}/plugin.py": plugin,
        "tests/test_plugin.py": test,
    }
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(words), encoding="utf-8")
    return folder
