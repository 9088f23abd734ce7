"""Trained students kept: one safetensors file per cell, loadable and exportable later.

A cell's final student weights are written to ``<out>/students/<cell id>.safetensors``
as the model's own state dict (the layout the zoo uses for peer checkpoints: for the
CIFAR zoo, RepDistiller's), with what is needed to rebuild the model in the file's
metadata: the registered student, its parameters, and the dataset's classes, channels,
image size and normalisation. The record names the file and its sha256.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from kdbench.core.errors import KdbenchError
from kdbench.engine.checkpoints import load_weights
from kdbench.engine.matrix import file_sha256
from kdbench.records.schema import StudentFile as StudentEntry
from kdbench.records.store import BadRecord, atomic_path, read_record

__all__ = ["FOLDER", "StudentFile", "load_student", "read_student", "save_student"]

FOLDER = "students"
META_KEY = "kdbench"


def save_student(model: nn.Module, out_dir: Path, cell_id: str, meta: dict[str, Any]) -> dict:
    """Write the student's weights atomically; returns the record's ``student`` entry."""
    from safetensors.torch import save

    relative = f"{FOLDER}/{cell_id}.safetensors"
    path = Path(out_dir) / relative
    state = model.state_dict()
    tensors = {key: t.detach().to("cpu", copy=True).contiguous() for key, t in state.items()}
    # One key: the file's header lists several in no fixed order, and equal weights
    # must give equal bytes (the record's hash compares trained students).
    metadata = {META_KEY: json.dumps(meta, sort_keys=True)}
    data = save(tensors, metadata=metadata)  # bytes: the file keeps the umask's mode
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return {"file": relative, "sha256": file_sha256(path), "bytes": path.stat().st_size}


class StudentFile:
    """A kept student: its weights and the metadata to rebuild and feed its model."""

    def __init__(self, path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.path, self.state, self.meta = path, state, meta

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A zero batch of the shape the model takes (for tracing and exports)."""
        return torch.zeros(batch, self.meta["in_channels"], *self.meta["image_size"])


def read_student(path: Path) -> StudentFile:
    """A kept student's file, or one ``KdbenchError`` line saying why it cannot be read."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise KdbenchError(f"student file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(META_KEY, "{}")
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        meta = json.loads(raw)
    except (SafetensorError, OSError, ValueError) as exc:
        raise KdbenchError(f"cannot read student file '{path}': {exc}") from None
    missing = {"model", "params", "num_classes", "in_channels", "image_size"} - set(meta)
    if missing:
        raise KdbenchError(
            f"student file '{path}' lacks metadata {', '.join(sorted(missing))} "
            "(not written by kdbench)"
        )
    return StudentFile(path, state, meta)


def student_path(source: str | Path | dict | Any, results: str | Path | None = None) -> Path:
    """The weights file behind a record (a record file, a record, or its dict) or a path.

    A record's file is relative to its results folder: the folder above ``records/`` for
    a record file, else ``results``. A record file is read as every reader reads it
    (:func:`~kdbench.records.store.read_record`), so a broken one is one error line; the
    weights file must lie inside the results folder, and its sha256 match the record's.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix != ".json":
            return path
        results = results or path.resolve().parent.parent
        source = read_record(path)
        if isinstance(source, BadRecord):
            raise KdbenchError(str(source))
    if isinstance(source, dict):
        record = source
    elif hasattr(source, "model_dump"):
        record = source.model_dump(mode="json")
    else:
        raise KdbenchError(
            f"a {type(source).__name__} is not a record: expected a record file, a record "
            "or a .safetensors file"
        )
    cell = record.get("cell_id")
    if not record.get("student"):
        raise KdbenchError(
            f"record of cell {cell} has no student file (run with [run] keep_students = true)"
        )
    try:
        entry = StudentEntry.model_validate(record["student"])
    except ValidationError:
        raise KdbenchError(
            f"record of cell {cell}: its student entry lacks a file name or sha256"
        ) from None
    if results is None:
        raise KdbenchError(f"record of cell {cell}: pass results= (its results folder)")
    where = PurePosixPath(entry.file)
    if where.is_absolute() or ".." in where.parts:
        raise KdbenchError(
            f"record of cell {cell}: student file '{entry.file}' is outside its results folder"
        )
    path = Path(results) / entry.file
    if path.is_file() and file_sha256(path) != entry.sha256:
        raise KdbenchError(f"student file '{path}' does not match its record's sha256")
    return path


def load_student(
    source: str | Path | dict | Any,
    *,
    results: str | Path | None = None,
    plugins: Any = None,
) -> nn.Module:
    """The trained student of a cell, in eval mode on the CPU.

    ``source`` is a record file (``<out>/records/<cell id>.json``), a record (then
    ``results`` names its results folder) or a ``.safetensors`` student file. The model
    is built through the installed plugins, exactly as the cell built it.
    """
    return build_student(read_student(student_path(source, results)), plugins)


def build_student(student: StudentFile, plugins: Any = None) -> nn.Module:
    """The registered model of a kept student with its weights loaded."""
    if plugins is None:
        from kdbench.core.plugins import load_plugins

        plugins = load_plugins()
    meta = student.meta
    entry = plugins.registry.get("students", meta["model"])
    model = entry.obj(
        num_classes=meta["num_classes"], in_channels=meta["in_channels"], **meta["params"]
    )
    model.eval()
    with torch.no_grad():
        model(student.example_input(2))  # materialise lazy layers, as the cell did
    load_weights(model, student.state, student.path, meta["model"])
    return model
