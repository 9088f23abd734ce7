"""``kdbench new-plugin``: a plugin distribution that installs and passes its tests as written.

One template per kind (loss, model, dataset, executor, tracker, format, command): a working
example to edit, registered through the entry point, with a test that runs the kit
(:mod:`kdbench.testing`) on it. Formats and commands use the ``kdbench.cli`` entry-point
group, which the command line loads without torch; the others the ``kdbench`` group.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from kdbench.core.errors import KdbenchError

KINDS = ("loss", "model", "dataset", "executor", "tracker", "format", "command")

# Kinds the command line loads from its own entry-point group (no torch at start-up).
COMMAND_LINE_KINDS = ("format", "command")

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
[project.entry-points.$group]
$module = "$module.plugin"

[tool.setuptools.packages.find]
where = ["src"]
"""

README = """\
# $dist

A kdbench $kind plugin registering `$name`.

    pip install -e .          # kdbench finds it through its entry point
    kdbench show $kind $shown  # what kdbench sees
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

EXECUTOR = '''\
"""The `$name` executor, registered through the `kdbench` entry point."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdbench import hookimpl
from kdbench.executors import jobs_of


class Executor:
    """$name: runs units one after another in this process, noting each in a journal.

    Everything an executor may use is in `kdbench.executors` (docs/scale-out.md).
    """

    in_process = True  # run() shows progress and reuses the loaded datasets

    def __init__(self, *, journal: str = "$name.log") -> None:
        self.journal = journal
        self.path: Path | None = None

    def start(self, out_dir: Any) -> None:
        self.path = Path(out_dir) / self.journal

    def map(self, units: Iterable[Any], run: Callable[[Any], Any]) -> Iterator[Any]:
        for unit in units:
            result = run(unit)
            self._note(len(jobs_of(unit)), result)
            yield result

    def _note(self, jobs: int, result: Any) -> None:
        if self.path is None:
            return
        records = result if isinstance(result, list) else [result]
        done = " ".join(
            f"{r['cell_id']}:{r['status']}" if isinstance(r, dict) else repr(r) for r in records
        )
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write(f"{datetime.now(UTC).isoformat()} {jobs} job(s) {done}\\n")

    def close(self) -> None:
        self.path = None


@hookimpl
def register_executors(register):
    register("$name", Executor)
'''

EXECUTOR_TEST = """\
from $module.plugin import Executor

from kdbench.testing import check_executor


def test_executor_keeps_the_harness_contract():
    check_executor(Executor, {"journal": "units.log"})


def test_journal_notes_each_unit_and_its_records(tmp_path):
    executor = Executor()
    executor.start(tmp_path)
    units = [["a"], ["b", "c"]]
    results = list(executor.map(units, lambda unit: [{"cell_id": j, "status": "ok"} for j in unit]))
    executor.close()
    assert [len(r) for r in results] == [1, 2]
    lines = (tmp_path / "$name.log").read_text(encoding="utf-8").splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["1 job(s) a:ok", "2 job(s) b:ok c:ok"]
"""

TRACKER = '''\
"""The `$name` tracker, registered through the `kdbench` entry point."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from kdbench import RunEvent, hookimpl


class Tracker:
    """$name: each evaluated epoch and each finished cell as a tab-separated line."""

    def __init__(self, *, out_dir: Path, filename: str = "$name.tsv") -> None:
        self.path = Path(out_dir) / filename  # TOML parameters are keyword-only
        self.file: TextIO | None = None

    @hookimpl
    def track_event(self, event: RunEvent) -> None:
        if event.kind == "epoch_ended" and "test_top1" in event.metrics:
            self._write(event.label, f"epoch {event.epoch}", event.metrics["test_top1"])
        elif event.kind == "cell_finished":
            self._write(event.label, event.status, event.metrics.get("top1", float("nan")))

    def _write(self, label: str | None, what: str | None, top1: float) -> None:
        if self.file is None:  # opened at the first event: building it writes nothing
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("a", encoding="utf-8")
        self.file.write(f"{label}\\t{what}\\t{top1:.2f}\\n")
        self.file.flush()

    def close(self) -> None:  # optional: called once when the run ends
        if self.file is not None:
            self.file.close()
            self.file = None


@hookimpl
def register_trackers(register):
    register("$name", Tracker)
'''

TRACKER_TEST = """\
from $module.plugin import Tracker

from kdbench.testing import check_tracker


def test_tracker_keeps_the_harness_contract(tmp_path):
    events = check_tracker(Tracker, {"filename": "top1.tsv"}, out_dir=tmp_path)
    lines = (tmp_path / "top1.tsv").read_text(encoding="utf-8").splitlines()
    evaluated = [e for e in events if e.kind == "epoch_ended" and "test_top1" in e.metrics]
    assert len(lines) == len(evaluated) + 1
    label, status, top1 = lines[-1].split("\\t")
    finished = events[-2]
    expected = (finished.label, "ok", round(finished.record["metrics"]["top1"], 2))
    assert (label, status, float(top1)) == expected
"""

FORMAT = '''\
"""The `$name` report format, registered through the `kdbench.cli` entry point.

`kdbench report` loads this module before it knows which format is wanted: import no
torch here.
"""

from __future__ import annotations

from kdbench import hookimpl


def render(leaderboard) -> str:
    """$name: each pair's measured methods, best first, one line each."""
    lines = []
    for board in leaderboard.boards:  # a kdbench.reports.Leaderboard (docs/plugins.md)
        lines.append(board.title)
        for row in board.measured:
            lines.append(f"  {row.label:<24} {row.mean:6.2f} % top-1 (n={row.n})")
    return "\\n".join(lines) + "\\n"


@hookimpl
def register_formats(register):
    register("$name", render, filename="$name.txt", description="methods, best first")
'''

FORMAT_TEST = """\
from $module.plugin import render

from kdbench.testing import check_format, sample_leaderboard


def test_format_keeps_the_harness_contract():
    text = check_format(render, "$name.txt")
    board = sample_leaderboard().boards[0]
    assert text.splitlines()[0] == board.title
    assert text.splitlines()[1].split()[0] == board.measured[0].label
"""

COMMAND = '''\
"""The `$dashed` command, registered through the `kdbench.cli` entry point.

`kdbench` loads this module to list its commands: import no torch here.
"""

from __future__ import annotations

import click

from kdbench import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="$dashed")
    @click.argument("results", type=click.Path(exists=True, file_okay=False))
    def command(results: str) -> None:
        """Print the best method of each pair in RESULTS (a results folder)."""
        from kdbench.reports import load_leaderboard  # loaded when the command runs

        for board in load_leaderboard(results).boards:
            best = board.measured[0]
            click.echo(f"{board.title}: {best.label} {best.mean:.2f}")
'''

COMMAND_TEST = """\
from $module.plugin import register_commands

from kdbench.testing import check_command, sample_leaderboard


def test_command_keeps_the_harness_contract():
    out = check_command(register_commands)
    boards = sample_leaderboard().boards
    assert len(out.splitlines()) == len(boards)
    assert out.splitlines()[0].startswith(f"{boards[0].title}: {boards[0].measured[0].label} ")
"""

TEMPLATES = {
    "loss": (LOSS, LOSS_TEST),
    "model": (MODEL, MODEL_TEST),
    "dataset": (DATASET, DATASET_TEST),
    "executor": (EXECUTOR, EXECUTOR_TEST),
    "tracker": (TRACKER, TRACKER_TEST),
    "format": (FORMAT, FORMAT_TEST),
    "command": (COMMAND, COMMAND_TEST),
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
    group = '"kdbench.cli"' if kind in COMMAND_LINE_KINDS else "kdbench"
    words = {
        "name": name,
        "module": module,
        "dist": dist,
        "kind": kind,
        "group": group,
        "dashed": name.replace("_", "-"),
        "shown": name.replace("_", "-") if kind == "command" else name,
        "requires": requires(),
    }
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
