"""The benchmark matrix: pairs x losses x datasets x seeds, expanded into cells.

A cell is plain, picklable data. Its id is the experiment's id
(:func:`kdbench.records.identity.experiment_id` of its resolved configuration), so the same
experiment gets the same id in every run, whatever the benchmark is called or how fast
it is asked to run, and resume can find its record.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdbench.core.config import BenchmarkConfig, Pair
from kdbench.core.errors import ConfigError
from kdbench.core.registry import Registry
from kdbench.records.identity import experiment_id, teacher_id
from kdbench.records.identity import stable_hash as stable_hash  # where the engine has found it


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossSpec:
    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher and where its weights come from: ``train`` or ``checkpoint``."""

    model: ModelSpec
    dataset: DatasetSpec
    source: str
    recipe: dict[str, Any]
    seed: int
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None

    @property
    def id(self) -> str:
        """What changes the teacher's weights (the checkpoint's content, not its path)."""
        return teacher_id(asdict(self))


@dataclass(frozen=True)
class Cell:
    """One student trained with one loss on one dataset with one seed."""

    benchmark: str
    dataset: DatasetSpec
    student: ModelSpec
    loss: LossSpec
    seed: int
    recipe: dict[str, Any]
    measure: dict[str, Any]
    teacher: TeacherSpec | None  # None for losses that need no teacher (the baseline)
    # A tuned benchmark's cells: "trial" or "final", and what the tuning says of them
    # (kdbench.engine.tuning); ordinary cells have neither, nor the keys in their config.
    phase: str | None = None
    tune: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as recorded (its experiment is hashed into the id)."""
        config = asdict(self)
        for key in ("phase", "tune"):
            if config[key] is None:
                del config[key]
        if self.teacher is not None:
            config["teacher"] = {"id": self.teacher.id, **config["teacher"]}
            config["teacher"].pop("checkpoint")
        return config

    @property
    def id(self) -> str:
        return experiment_id(self.config())

    def label(self) -> str:
        """``digits cnn_large->cnn kd s0``; a cell without teacher names its student alone."""
        pair = self.student.name
        if self.teacher:
            pair = f"{self.teacher.model.name}->{pair}"
        phase = f" {self.phase}" if self.phase == "final" else ""
        if self.phase == "trial" and self.tune:
            phase = f" trial {self.tune['trial']}"
        return f"{self.dataset.name} {pair} {self.loss.label}{phase} s{self.seed}"


def expand(config: BenchmarkConfig, registry: Registry, file: Path) -> list[Cell]:
    """All cells of a benchmark, deduplicated (a baseline shared by pairs runs once)."""
    return [cell for cell, _ in cells_and_pairs(config, registry, file)]


def cells_and_pairs(
    config: BenchmarkConfig, registry: Registry, file: Path
) -> list[tuple[Cell, int]]:
    """Every cell (deduplicated, in matrix order) and the ``[[pairs]]`` entry it came from
    (the first one, for a baseline shared by pairs): where its search space is written."""
    cells: dict[str, tuple[Cell, int]] = {}
    teacher_recipe = (config.teacher_recipe or config.recipe).model_dump()
    for dataset_name, dataset_params in config.datasets.items():
        dataset = DatasetSpec(dataset_name, dict(dataset_params))
        for i, pair in enumerate(config.pairs):
            teacher = _teacher_spec(pair, dataset, teacher_recipe, config, file, i)
            student = ModelSpec(pair.student, dict(pair.student_params))
            recipe = config.student_recipe(pair).model_dump()
            for label in config.loss_labels():
                name = config.loss_name(label)
                params = config.loss_params(label, pair)
                needs_teacher = registry.get("losses", name).obj.needs_teacher
                for seed in config.benchmark.seeds:
                    cell = Cell(
                        benchmark=config.benchmark.name,
                        dataset=dataset,
                        student=student,
                        loss=LossSpec(label, name, params),
                        seed=seed,
                        recipe=recipe,
                        measure=config.measure.model_dump(),
                        teacher=teacher if needs_teacher else None,
                    )
                    cells.setdefault(cell.id, (cell, i))
    return list(cells.values())


def _teacher_spec(
    pair: Pair, dataset: DatasetSpec, recipe: dict, config: BenchmarkConfig, file: Path, index: int
) -> TeacherSpec:
    model = ModelSpec(pair.teacher, dict(pair.teacher_params))
    if pair.teacher_checkpoint is None:
        return TeacherSpec(model, dataset, "train", recipe, config.benchmark.teacher_seed)
    path = Path(pair.teacher_checkpoint)
    path = path if path.is_absolute() else file.parent / path
    if not path.is_file():
        raise ConfigError(
            f"teacher checkpoint '{path}' does not exist (relative paths are resolved from "
            "the benchmark file's folder)",
            file=str(file),
            key=f"pairs[{index}].teacher_checkpoint",
        )
    return TeacherSpec(
        model,
        dataset,
        "checkpoint",
        {},
        0,
        checkpoint=str(path),
        checkpoint_sha256=file_sha256(path),
    )


def teachers_of(cells: list[Cell]) -> list[TeacherSpec]:
    """The distinct teachers a set of cells needs, in first-use order."""
    seen: dict[str, TeacherSpec] = {}
    for cell in cells:
        if cell.teacher is not None:
            seen.setdefault(cell.teacher.id, cell.teacher)
    return list(seen.values())
