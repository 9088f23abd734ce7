"""A cell's teacher made ready for training: loaded, frozen, measured, folded.

The teacher is measured as loaded, before the BatchNorm folding and memory format that
only speed its forward up, so its cost is the network's, not the harness's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdbench.core.data import DatasetSplits
from kdbench.engine.cell_record import cost_ref
from kdbench.engine.context import RunContext
from kdbench.engine.folding import fold_batchnorm
from kdbench.engine.job import CellJob
from kdbench.engine.teachers import load_teacher


def frozen_teacher(
    job: CellJob,
    context: RunContext,
    data: DatasetSplits,
    sample: torch.Tensor,
    device: torch.device,
) -> tuple[torch.nn.Module, dict[str, str], dict[str, Any] | None, int]:
    """The job's teacher, its taps, its cost reference and how many BatchNorms were folded."""
    cell = job.cell
    teacher = load_teacher(cell.teacher, context, data, Path(job.teacher_weights), device)
    teacher.requires_grad_(False)
    # measured as loaded: before the folding and memory format that only speed training
    cost = cost_ref(job, teacher, sample, data.num_classes, "teacher")
    taps = context.taps("teachers", cell.teacher.model, teacher)
    # Inference mode, BatchNorms folded where no declared tap could see the difference
    # (all taps, not just the wanted ones: a cell's numbers must not depend on its group).
    folded = fold_batchnorm(teacher, keep=[path.partition(":")[0] for path in taps.values()])
    if cell.recipe["channels_last"]:
        teacher = teacher.to(memory_format=torch.channels_last)
    return teacher, taps, cost, folded
