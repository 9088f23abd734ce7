"""Validation that builds everything a run would and trains nothing.

``kdbench validate`` and ``kdbench run`` (before it writes anything) go through
:func:`validate_benchmark`: the file is read within its size limit and parsed; names,
parameter types and ranges, and the limits are checked; then every dataset is loaded,
every teacher and student built on the dataset's classes and channels and run on two
samples on the CPU, every teacher checkpoint opened and matched against its model, and
every loss constructed and given the feature taps it asks for, and every tracker
constructed (into a scratch folder, removed after). A mistake found late
(a missing tap, a truncated checkpoint, offline pretrained weights) thus fails in
seconds rather than after the teacher trained. All mistakes of a stage are reported
together, one ``file: key: what`` line each.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench.core.config import (
    BenchmarkConfig,
    Pair,
    name_errors,
    parse_config,
    raise_if_any,
    read_benchmark,
)
from kdbench.core.data import DatasetSplits
from kdbench.core.errors import ConfigError, KdbenchError
from kdbench.core.image_files import StreamingDataset
from kdbench.core.limits import MAX_CELLS, cells_error, matrix_upper_bound, seed_and_epoch_errors
from kdbench.core.overrides import Override, apply_overrides
from kdbench.core.param_types import shorten
from kdbench.engine.cell import _prepare
from kdbench.engine.context import RunContext
from kdbench.engine.distributed import NO_FP16
from kdbench.engine.job import CellJob
from kdbench.engine.matrix import Cell, DatasetSpec, TeacherSpec, expand
from kdbench.engine.streaming import sample_inputs
from kdbench.engine.teachers import _build as build_teacher
from kdbench.engine.teachers import load_teacher
from kdbench.engine.trackers import tracker_errors, wanted_trackers

_CPU = torch.device("cpu")
# Past this many cells (before deduplication) the matrix is not even expanded.
_EXPAND_AT_MOST = 10 * MAX_CELLS


def validate_benchmark(
    path: str | Path,
    context: RunContext,
    *,
    build: bool = True,
    confirmed: bool = False,
    devices: int | None = None,
    overrides: Sequence[Override] = (),
) -> tuple[BenchmarkConfig, list[Cell]]:
    """The checked config and its cells; raises every mistake found, nothing written.

    ``build`` builds every dataset, model and loss (else the file alone is checked);
    ``confirmed`` (``--yes``) lifts the limits on seeds, epochs and matrix size;
    ``devices`` (``--devices``) replaces the recipes' own when checking what they allow;
    ``overrides`` (``--set``) replace the file's values before anything is checked.
    """
    path = Path(path)
    file = shorten(str(path)) + (" (with --set)" if overrides else "")
    config = parse_config(apply_overrides(read_benchmark(path), overrides), file)
    registry = context.plugins.registry
    errors = name_errors(config, registry, file)
    errors += seed_and_epoch_errors(config, file, confirmed=confirmed)
    errors += _checkpoint_path_errors(config, path, file)
    errors += _amp_errors(config, file, devices)
    errors += tracker_errors(config.trackers, registry, file=file)
    bound = matrix_upper_bound(config)
    if bound > max(_EXPAND_AT_MOST, config.benchmark.max_cells or 0):
        errors += _some(cells_error(bound, config, file, confirmed=confirmed, exact=False))
    raise_if_any(errors)
    cells = expand(config, registry, path)
    raise_if_any(_some(cells_error(len(cells), config, file, confirmed=confirmed)))
    if build:
        raise_if_any(_Builder(config, context, file, path.parent).errors(cells))
    return config, cells


def _some(error: ConfigError | None) -> list[ConfigError]:
    return [error] if error else []


def _amp_errors(config: BenchmarkConfig, file: str, devices: int | None) -> list[ConfigError]:
    """fp16 on several devices: each rank's gradient scaler would skip steps on its own
    overflow and the ranks' weights drift apart, so it is refused before training."""
    recipes = [("recipe", config.recipe)]
    for i, pair in enumerate(config.pairs):  # a pair's own amp or devices: its own mistake
        if {"amp", "devices"} & pair.recipe.keys():
            recipes.append((f"pairs[{i}].recipe", config.student_recipe(pair)))
    errors = []
    for key, recipe in recipes:
        count = devices or recipe.devices
        if recipe.amp == "fp16" and count > 1:
            errors.append(
                ConfigError(
                    f'amp = "fp16" {NO_FP16} (devices = {count})',
                    file=file,
                    key=f"{key}.amp",
                )
            )
    return errors


def _checkpoint_path_errors(config: BenchmarkConfig, path: Path, file: str) -> list[ConfigError]:
    """Checkpoint paths that name no readable file (before the matrix hashes them)."""
    errors = []
    for i, pair in enumerate(config.pairs):
        if pair.teacher_checkpoint is None:
            continue
        checkpoint = Path(pair.teacher_checkpoint)
        checkpoint = checkpoint if checkpoint.is_absolute() else path.parent / checkpoint
        shown = shorten(str(checkpoint))
        try:
            problem = (
                None
                if checkpoint.is_file()
                else "is a folder, not a weights file"
                if checkpoint.is_dir()
                else "does not exist (relative paths are resolved from the benchmark file's folder)"
            )
        except OSError as exc:
            problem = f"cannot be opened: {exc.strerror or exc}"
        if problem:
            errors.append(
                ConfigError(
                    f"teacher checkpoint '{shown}' {problem}",
                    file=file,
                    key=f"pairs[{i}].teacher_checkpoint",
                )
            )
    return errors


class _Builder:
    """Builds each dataset, teacher and student/loss combination once, collecting errors."""

    def __init__(
        self, config: BenchmarkConfig, context: RunContext, file: str, folder: Path
    ) -> None:
        self.config = config
        self.folder = folder
        self.context = context
        self.file = file
        self.found: dict[str, ConfigError] = {}  # by message: a shared mistake is said once
        self.datasets: dict[str, DatasetSplits | None] = {}
        self.teachers: dict[str, tuple[nn.Module, dict[str, str]] | None] = {}
        self.students: dict[str, bool | None] = {}

    def errors(self, cells: list[Cell]) -> list[ConfigError]:
        executor = self.config.executor
        entry = self.context.plugins.registry.get("executors", executor.name)
        # Constructing an executor only checks its parameters; start() does the work.
        self._attempt("executor.params", lambda: entry.obj(**executor.params))
        self._trackers()
        done: set[str] = set()
        for cell in cells:
            data = self._dataset(cell.dataset)
            what = (cell.dataset.name, cell.teacher and cell.teacher.id, cell.student, cell.loss)
            if data is None or repr(what) in done:
                continue
            done.add(repr(what))
            self._cell(cell, data)
        return list(self.found.values())

    def _trackers(self) -> None:
        """Build and close each tracker as a run would, into a folder removed after.

        A tracker's constructor is where it checks what the types cannot (an MLflow
        store's URI, a log folder that can be made); a tracker writing its files into
        ``out_dir`` thus leaves nothing behind.
        """
        registry = self.context.plugins.registry
        with tempfile.TemporaryDirectory(prefix="kdbench-validate-") as scratch:
            for name, params in wanted_trackers(self.config.trackers).items():
                build = functools.partial(
                    registry.get("trackers", name).obj, out_dir=Path(scratch), **params
                )
                key = f"trackers.{name}"
                tracker = self._attempt(key, build)
                close = getattr(tracker, "close", None)
                if callable(close):
                    self._attempt(key, close)

    def _attempt(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()``, or None with its error recorded under ``key`` (or under the key
        within it that a :class:`ConfigError` names, such as ``trackers.mlflow.tracking_uri``)."""
        try:
            with warnings.catch_warnings():  # a throwaway build's warnings are noise here
                warnings.simplefilter("ignore")
                return build()
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything for bad input
            own = exc.key if isinstance(exc, ConfigError) else None
            self._say(own if own and own.startswith(f"{key}.") else key, _message(exc), cause=exc)
            return None

    def _dataset(self, spec: DatasetSpec) -> DatasetSplits | None:
        if spec.name not in self.datasets:
            self.datasets[spec.name] = self._attempt(
                f"datasets.{spec.name}", lambda: self.context.dataset(spec)[0]
            )
        return self.datasets[spec.name]

    def _teacher(
        self, spec: TeacherSpec, data: DatasetSplits
    ) -> tuple[nn.Module, dict[str, str]] | None:
        if spec.id not in self.teachers:
            i, _ = self._pair(lambda p: _is_teacher(p, spec, self.folder))
            if spec.checkpoint:
                key = f"pairs[{i}].teacher_checkpoint"
                path = Path(spec.checkpoint)
                model = self._attempt(
                    key, lambda: load_teacher(spec, self.context, data, path, _CPU)
                )
            else:
                key = f"pairs[{i}].teacher"
                model = self._attempt(key, lambda: build_teacher(spec, self.context, data, _CPU))
            self.teachers[spec.id] = None
            if model is not None:
                taps = self._attempt(key, lambda: self.context.taps("teachers", spec.model, model))
                self.teachers[spec.id] = None if taps is None else (model, taps)
        return self.teachers[spec.id]

    def _cell(self, cell: Cell, data: DatasetSplits) -> None:
        teacher = self._teacher(cell.teacher, data) if cell.teacher else None
        if cell.teacher and teacher is None:
            return
        i, pair = self._pair(lambda p: _is_pair_of(p, cell, self.config, self.folder))
        if isinstance(data, StreamingDataset):
            self._streaming_recipe(cell, i, pair)
        sample = sample_inputs(
            data.train, 2, mean=torch.tensor(data.mean), std=torch.tensor(data.std), device=_CPU
        )
        built = repr((cell.dataset.name, cell.student))
        if built not in self.students:  # once per student, so its error is not per loss
            self.students[built] = self._attempt(
                f"pairs[{i}].student",
                lambda: _dry_forward(
                    self.context.build_model("students", cell.student, data), sample
                ),
            )
        if self.students[built] is None:
            return
        label = cell.loss.label
        key = f"pairs[{i}].loss_params.{label}" if label in pair.loss_params else f"losses.{label}"
        model, taps = teacher if teacher else (None, None)
        job = CellJob(cell=cell, device="cpu")
        self._attempt(
            key, lambda: _prepare(job, self.context, data, model, taps, sample, None, _CPU)
        )

    def _streaming_recipe(self, cell: Cell, i: int, pair: Pair) -> None:
        """Recipe settings a streaming dataset cannot honour: an error, never ignored.

        Its views are its own (``ImageViews``: random resized crops), so the in-memory
        ``augment`` does not apply, and those views are continuous, so there is no finite
        set of them to cache teacher logits for.
        """
        recipe, name = cell.recipe, cell.dataset.name

        def key(setting: str) -> str:  # a pair's own override is its own mistake
            return f"pairs[{i}].recipe.{setting}" if setting in pair.recipe else f"recipe.{setting}"

        augment = recipe["augment"]
        if augment.get("crop_padding") or augment.get("flip"):
            self._say(
                key("augment"),
                f"dataset '{name}' streams image files and cuts its own views (random "
                "resized crop and flip); remove augment for its pairs",
            )
        if recipe["logit_cache"] == "on":
            self._say(
                key("logit_cache"),
                f"dataset '{name}' streams image files with continuous random views, which "
                'no logit cache can hold; use "auto" or "off"',
            )

    def _say(self, key: str, message: str, cause: BaseException | None = None) -> None:
        """Record an error once (by its text: a shared mistake is said once)."""
        error = ConfigError(message, file=self.file, key=key)
        error.__cause__ = cause  # for --debug
        self.found.setdefault(str(error), error)

    def _pair(self, matches: Callable[[Pair], bool]) -> tuple[int, Pair]:
        """The first pair a cell came from (its index names the key of an error)."""
        found = ((i, p) for i, p in enumerate(self.config.pairs) if matches(p))
        return next(found, (0, self.config.pairs[0]))


def _dry_forward(model: nn.Module, sample: torch.Tensor) -> bool:
    model.eval()
    with torch.no_grad():
        model(sample)
    return True


def _is_teacher(pair: Pair, spec: TeacherSpec, folder: Path) -> bool:
    checkpoint = pair.teacher_checkpoint and str(folder / pair.teacher_checkpoint)
    same_source = checkpoint == spec.checkpoint
    return (
        pair.teacher == spec.model.name and pair.teacher_params == spec.model.params and same_source
    )


def _is_pair_of(pair: Pair, cell: Cell, config: BenchmarkConfig, folder: Path) -> bool:
    return (
        pair.student == cell.student.name
        and pair.student_params == cell.student.params
        and config.loss_params(cell.loss.label, pair) == cell.loss.params
        and (cell.teacher is None or _is_teacher(pair, cell.teacher, folder))
    )


def _message(exc: BaseException) -> str:
    """One line: a user error as it is, anything else with its type and cut short."""
    if isinstance(exc, ConfigError):
        text, limit = exc.detail, 1000
    elif isinstance(exc, KdbenchError):
        text, limit = str(exc), 1000
    else:
        text, limit = f"building it failed: {type(exc).__name__}: {exc}", 300
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return shorten(" ".join(lines) or type(exc).__name__, limit)
