"""Checkpoints inside a cell: a killed cell or lockstep group resumes from its last epoch.

Every ``checkpoint_every`` epochs a group saves, in one file written atomically,
each student's training state (:meth:`kdbench.engine.training.StudentRun.state_dict`: weights,
optimizer, schedule, loss state such as CRD's memory, grad scaler, random numbers,
history), the data stream's position and the wall time so far. The file lives next to
the records, ``<out>/checkpoints/<group id>/state.pt``, with ``cells.json`` naming the
group's cells; a rerun of the same cells loads it and trains on from the epoch after
it, so the finished records equal those of an uninterrupted run (same seed, device and
threads).

A file is used only when it is this group's: same cells, same recipes, a number of
epochs done that the recipe leaves to train, and every tensor shaped as the group's own.
Otherwise it is set aside with one line saying why (the record keeps it as
``resume_note``), and the group trains from epoch 0. The runner deletes a group's
checkpoint only once every one of its cells has its record written (unless
``keep_checkpoints``), so a process killed in between resumes without training again.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kdbench.core.errors import KdbenchError
from kdbench.engine.matrix import stable_hash
from kdbench.records.store import atomic_path, write_json_atomic

__all__ = [
    "FORMAT",
    "CheckpointKeeper",
    "GroupCheckpoint",
    "Outputs",
    "Resume",
    "group_id",
]

FORMAT = 2  # bumped when the file's layout changes; other versions are set aside
FOLDER = "checkpoints"
CELLS = "cells.json"  # beside state.pt: whose checkpoint it is, readable without torch


@dataclass(frozen=True)
class Outputs:
    """Where a cell keeps files beside its record, and which (the ``[run]`` table)."""

    out_dir: str
    checkpoint_every: int = 1  # epochs between checkpoints; 0 turns them off
    keep_checkpoints: bool = False
    keep_students: bool = True


class Stateful(Protocol):
    """A student run or a data stream: what a checkpoint saves and puts back."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Resume:
    """Where a group starts: a saved state, or none and, when a file was set aside, why."""

    state: dict[str, Any] | None = None
    note: str | None = None


def group_id(cell_ids: list[str]) -> str:
    """A single cell's id, or a hash of a lockstep group's (order-free)."""
    return cell_ids[0] if len(cell_ids) == 1 else "group-" + stable_hash(sorted(cell_ids))


class GroupCheckpoint:
    """The checkpoint file of one cell or lockstep group (``recipes``: one per cell)."""

    def __init__(
        self, outputs: Outputs, cell_ids: list[str], recipes: list[dict[str, Any]] | None = None
    ) -> None:
        self.outputs = outputs
        self.cell_ids = list(cell_ids)
        self.recipes = stable_hash(recipes or [])
        self.epochs = recipes[0]["epochs"] if recipes else None
        self.folder = Path(outputs.out_dir) / FOLDER / group_id(self.cell_ids)
        self.path = self.folder / "state.pt"

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether to save after ``epoch`` (0-based): every N epochs, never after the last."""
        every = self.outputs.checkpoint_every
        return every > 0 and (epoch + 1) % every == 0 and epoch + 1 < epochs

    def save(self, epoch: int, seconds: float, stream: dict, runs: list[dict]) -> None:
        """Save the state after ``epoch`` (0-based), replacing the previous one atomically."""
        state = {
            "format": FORMAT,
            "cells": self.cell_ids,
            "recipes": self.recipes,
            "epochs_done": epoch + 1,
            "seconds": seconds,
            "stream": stream,
            "runs": runs,
        }
        import torch  # here: a job (and so the executor API) imports this module

        if not (self.folder / CELLS).is_file():
            write_json_atomic(self.folder / CELLS, self.cell_ids)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def read(self, fresh: dict[str, Any]) -> Resume:
        """The saved state if it is this group's, else why not (None: no file to use).

        ``fresh`` is ``{"stream": ..., "runs": [...]}`` as the group stands now: every
        tensor of the file must have the shape of the one it replaces.
        """
        if self.outputs.checkpoint_every <= 0 or not self.path.is_file():
            return Resume()
        import torch

        from kdbench.engine.checkpoints import first_line  # it imports torch: here, as torch is

        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for unreadable files
            return self._set_aside(f"it is unreadable ({first_line(exc)})")
        problem = self._problem(state, fresh)
        return self._set_aside(problem) if problem else Resume(state)

    def restore(self, runs: list[Stateful], stream: Stateful) -> Resume:
        """Put the saved state into ``runs`` and ``stream`` when it is this group's."""
        found = self.read({"stream": stream.state_dict(), "runs": [r.state_dict() for r in runs]})
        if found.state is None:
            return found
        try:
            for run, state in zip(runs, found.state["runs"], strict=True):
                run.load_state_dict(state)
            stream.load_state_dict(found.state["stream"])
        except Exception as exc:  # noqa: BLE001 - half-loaded runs cannot train on
            from kdbench.engine.checkpoints import first_line

            self.path.unlink(missing_ok=True)
            raise KdbenchError(
                f"checkpoint '{self.path}' does not load ({first_line(exc)}); it is removed, "
                "so the cells train from epoch 0 when run again"
            ) from exc
        return found

    def _problem(self, state: Any, fresh: dict[str, Any]) -> str | None:
        """Why ``state`` is not this group's checkpoint, or None when it is."""
        if not isinstance(state, dict):
            return f"it holds a {type(state).__name__}, not a checkpoint"
        if state.get("format") != FORMAT:
            return f"it has format {state.get('format')!r}, this version reads {FORMAT}"
        if state.get("cells") != self.cell_ids:
            return f"it is of cells {state.get('cells')}, not {self.cell_ids}"
        if state.get("recipes") != self.recipes:
            return "it was trained with other recipes than these cells'"
        done = state.get("epochs_done")
        if type(done) is not int or not 0 < done < (self.epochs or done + 1):
            return f"it claims {done!r} epochs done, and the recipe trains {self.epochs}"
        if not isinstance(state.get("seconds"), int | float):
            return "its training time is not a number"
        saved_runs, runs = state.get("runs"), fresh["runs"]
        if not isinstance(saved_runs, list) or len(saved_runs) != len(runs):
            count = len(saved_runs) if isinstance(saved_runs, list) else 0
            return f"it holds {count} student(s), the group trains {len(runs)}"
        for i, (saved, now) in enumerate(zip(saved_runs, runs, strict=True)):
            if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
                return f"student {i + 1} has no weights"
            if set(saved["model"]) != set(now["model"]):
                return f"student {i + 1}'s weights have other keys than its model's"
        names = [f"student {i + 1}" for i in range(len(runs))]
        return _shape_mismatch(state.get("stream"), fresh["stream"], "stream") or _first(
            map(_shape_mismatch, saved_runs, runs, names)
        )

    def _set_aside(self, why: str) -> Resume:
        return Resume(note=f"checkpoint '{self.path}' set aside: {why}; trained from epoch 0")


def _shape_mismatch(saved: Any, fresh: Any, where: str) -> str | None:
    """The first tensor of ``fresh`` that ``saved`` holds in another shape (or not at all).

    Only what both hold is compared: a fresh optimizer has no momentum yet.
    """
    import torch

    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            return f"{where} is not a tensor"
        if saved.shape != fresh.shape or saved.dtype != fresh.dtype:
            return (
                f"{where} is {tuple(saved.shape)} {saved.dtype} in the file, "
                f"{tuple(fresh.shape)} {fresh.dtype} here"
            )
        return None
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return f"{where} is not a mapping"
        return _first(
            _shape_mismatch(saved[k], fresh[k], f"{where}.{k}") for k in fresh if k in saved
        )
    # lists that grow with training (history, epoch times) are compared only when equal
    if isinstance(fresh, list | tuple) and isinstance(saved, list | tuple):
        if len(saved) != len(fresh):
            return None
        pairs = enumerate(zip(saved, fresh, strict=True))
        return _first(_shape_mismatch(s, f, f"{where}[{i}]") for i, (s, f) in pairs)
    return None


def _first(problems: Iterable[str | None]) -> str | None:
    return next(filter(None, problems), None)


@dataclass
class CheckpointKeeper:
    """The runner's side of checkpoints: it writes the records, so it deletes them.

    A group's checkpoint goes only once each of its cells has its record written in
    this run or is ``done`` (an ``ok`` record: a cell that failed before may be training
    again now), so a process killed between the two resumes instead of training again;
    the next run deletes what such a kill left. Each ``resume_note`` is said once.
    """

    outputs: Outputs
    done: Callable[[str], bool]
    say: Callable[[str], None]
    said: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)

    def recorded(self, record: dict[str, Any]) -> None:
        """After ``record`` is written: say its note, delete checkpoints now finished."""
        self.written.add(record["cell_id"])
        note = record.get("resume_note")
        if note and note not in self.said:
            self.said.add(note)
            self.say(f"kdbench: warning: {note}")
        self.sweep()

    def sweep(self) -> list[Path]:
        """Delete the checkpoints whose cells all have records; the folders deleted."""
        root = Path(self.outputs.out_dir) / FOLDER
        if self.outputs.keep_checkpoints or not root.is_dir():
            return []
        done = []
        for folder in sorted(root.iterdir()):
            cells = _cells_of(folder)
            if cells and all(cell in self.written or self.done(cell) for cell in cells):
                shutil.rmtree(folder, ignore_errors=True)
                done.append(folder)
        return done


def _cells_of(folder: Path) -> list[str]:
    """The cells a checkpoint folder is for (a single cell's folder is named after it)."""
    try:
        cells = json.loads((folder / CELLS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cells = None
    if isinstance(cells, list) and all(isinstance(c, str) for c in cells):
        return cells
    return [] if folder.name.startswith("group-") else [folder.name]
