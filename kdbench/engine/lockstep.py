"""Lockstep grouping: cells that see identical batches train together.

Cells sharing dataset, teacher, seed, the stream-shaping recipe numbers and (a tuning
trial's) validation split share one batch stream and one teacher forward; each keeps
its own student, loss and random state.
"""

from __future__ import annotations

from kdbench.engine.job import CellJob
from kdbench.engine.matrix import Cell, stable_hash


def lockstep_key(cell: Cell) -> str:
    """Cells with equal keys see identical batches and can share one teacher forward."""
    recipe = cell.recipe
    return stable_hash(
        [
            cell.dataset.name,
            cell.dataset.params,
            cell.teacher.id if cell.teacher else None,
            cell.seed,
            recipe["epochs"],
            recipe["batch_size"],
            recipe["augment"],
            recipe["amp"],
            # shared by the group through its stream and teacher: must agree too
            recipe["channels_last"],
            recipe["compile"],
            recipe["logit_cache"],
            # one set of processes trains the group
            recipe.get("devices", 1),
            recipe.get("sync_bn", True),
            # a trial trains on the training split less its validation split
            cell.tune["validation"] if cell.phase == "trial" and cell.tune else None,
        ]
    )


def lockstep_groups(jobs: list[CellJob]) -> list[list[CellJob]]:
    """Jobs grouped by :func:`lockstep_key`, in first-appearance order."""
    groups: dict[str, list[CellJob]] = {}
    for job in jobs:
        groups.setdefault(lockstep_key(job.cell), []).append(job)
    return list(groups.values())
