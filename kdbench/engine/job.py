"""What an executor ships and gets back: the cell job and the head of its record.

A job is picklable and carries everything a worker needs besides the plugins; every
record, whatever happens to the cell, starts with :func:`record_head`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kdbench.engine.cell_checkpoint import Outputs
from kdbench.engine.matrix import Cell
from kdbench.records.store import SCHEMA_VERSION


@dataclass(frozen=True)
class CellJob:
    """A cell plus what the run resolved for it: picklable, so any executor can ship it."""

    cell: Cell
    device: str = "auto"
    teacher_weights: str | None = None
    teacher_info: dict[str, Any] | None = None
    source_dir: str = "."
    config_hash: str | None = None
    outputs: Outputs | None = None  # checkpoints, kept student, costs; none: per-cell latency
    # Epochs of every cell of the run that can read this cell's teacher logits: what
    # logit_cache = "auto" weighs the cost of computing them against.
    logit_demand: int | None = None
    # A tuning trial's study, so the worker can report each epoch and be pruned
    # (kdbench.engine.trial_pruning); None for every other cell.
    pruning: dict[str, Any] | None = None


def record_head(job: CellJob) -> dict[str, Any]:
    """What every record of a job starts with, whatever happens to the cell."""
    return {
        "schema_version": SCHEMA_VERSION,
        "cell_id": job.cell.id,
        "config": job.cell.config(),
        "benchmark_config_hash": job.config_hash,
        "teacher": job.teacher_info,
        "started_at": datetime.now(UTC).isoformat(),
    }


def error_of(exc: BaseException, prefix: str = "") -> dict[str, str]:
    """An exception as a record's ``error``: type, message and traceback."""
    return {
        "type": type(exc).__name__,
        "message": f"{prefix}{exc}",
        "traceback": "".join(traceback.format_exception(exc, limit=20)),
    }
