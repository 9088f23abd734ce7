"""Checkpoints inside a cell: a killed cell or lockstep group resumes from its last epoch.

Every ``checkpoint_every`` epochs a group saves, in one file written atomically,
each student's training state (:meth:`kdbench.engine.training.StudentRun.state_dict`: weights,
optimizer, schedule, loss state such as CRD's memory, grad scaler, random numbers,
history), the data stream's position and the wall time so far. The file lives next to
the records, ``<out>/checkpoints/<group id>/state.pt``; a rerun of the same cells loads
it and trains on from the epoch after it, so the finished records equal those of an
uninterrupted run (same seed, device and threads). It is deleted once the group's
records are made, unless ``keep_checkpoints``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.engine.matrix import stable_hash
from kdbench.records.store import atomic_path

__all__ = ["FORMAT", "GroupCheckpoint", "Outputs", "group_id"]

FORMAT = 1  # bumped when the file's layout changes; other versions are ignored
FOLDER = "checkpoints"


@dataclass(frozen=True)
class Outputs:
    """Where a cell keeps files beside its record, and which (the ``[run]`` table)."""

    out_dir: str
    checkpoint_every: int = 1  # epochs between checkpoints; 0 turns them off
    keep_checkpoints: bool = False
    keep_students: bool = True


def group_id(cell_ids: list[str]) -> str:
    """A single cell's id, or a hash of a lockstep group's (order-free)."""
    return cell_ids[0] if len(cell_ids) == 1 else "group-" + stable_hash(sorted(cell_ids))


class GroupCheckpoint:
    """The checkpoint file of one cell or lockstep group."""

    def __init__(self, outputs: Outputs, cell_ids: list[str]) -> None:
        self.outputs = outputs
        self.cell_ids = list(cell_ids)
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
            "epochs_done": epoch + 1,
            "seconds": seconds,
            "stream": stream,
            "runs": runs,
        }
        import torch  # here: a job (and so the executor API) imports this module

        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def load(self, runs: int) -> dict[str, Any] | None:
        """The saved state, or None when there is none this group can use.

        A file of another format, of other cells or another number of live students
        (a plugin changed) is ignored, and the group trains from the start.
        """
        if self.outputs.checkpoint_every <= 0 or not self.path.is_file():
            return None
        import torch

        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - an unreadable checkpoint only costs the epochs
            return None
        usable = (
            isinstance(state, dict)
            and state.get("format") == FORMAT
            and state.get("cells") == self.cell_ids
            and len(state.get("runs", ())) == runs
        )
        return state if usable else None

    def discard(self) -> None:
        """Delete the checkpoint (the group's records are made), unless kept."""
        if not self.outputs.keep_checkpoints:
            shutil.rmtree(self.folder, ignore_errors=True)
