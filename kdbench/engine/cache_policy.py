"""Where a group's teacher outputs come from: a forward per batch, or the logit cache.

The exact logit cache replays the teacher's logits for the same augmented batches; it
is used when asked (``logit_cache = "on"``) or, with ``"auto"``, when it pays
(:func:`~kdbench.engine.logit_cache.worth_caching`), and never when a loss needs the
teacher's features, which the cache does not hold, nor for a streaming dataset, whose
continuous augmentation has no finite set of views to cache logits for.
"""

from __future__ import annotations

from typing import Any

import torch

from kdbench.core.data import DatasetSplits
from kdbench.engine.batches import Augment, SeededBatches
from kdbench.engine.context import RunContext
from kdbench.engine.features import FeatureTaps
from kdbench.engine.logit_cache import CachedTeacher, build_logit_cache, cache_key, worth_caching
from kdbench.engine.matrix import Cell
from kdbench.engine.online_teacher import OnlineTeacher
from kdbench.engine.precision import compile_mode, compiled
from kdbench.engine.streaming import NO_LOGIT_CACHE


def use_cache(recipe: dict[str, Any]) -> bool:
    """Whether the recipe asks for the logit cache, or leaves it to ``auto`` and it pays."""
    setting = recipe["logit_cache"]
    augment = Augment(**recipe["augment"])
    return setting == "on" or (setting == "auto" and worth_caching(augment, recipe["epochs"]))


def no_cache_reason(stream: SeededBatches) -> str | None:
    """Why no logit cache can serve a stream (its record says so), or None if one can.

    A streaming dataset's views are continuous (random resized crops): no finite set of
    views to cache the teacher's logits for.
    """
    return NO_LOGIT_CACHE if stream.augment is None else None


def teacher_source(
    cell: Cell,
    teacher: torch.nn.Module,
    taps: FeatureTaps | None,
    *,
    context: RunContext,
    data: DatasetSplits,
    stream: SeededBatches,
    device: torch.device,
    amp: torch.dtype | None,
    folded: int,
) -> tuple[OnlineTeacher | CachedTeacher, bool]:
    """The group's teacher outputs, and whether they come from the logit cache."""
    recipe = cell.recipe
    mode = compile_mode(recipe["compile"])
    forward = compiled(teacher, mode) if mode else None
    source = OnlineTeacher(teacher, taps, amp, forward=forward)
    if taps is not None or no_cache_reason(stream) or not use_cache(recipe):
        return source, False
    key = cache_key(cell.teacher.id, recipe["augment"], device, folded, amp)
    logits = context.cached(
        key,
        lambda: build_logit_cache(
            teacher, data.train, stream.augment, mean=torch.tensor(data.mean),
            std=torch.tensor(data.std),
            device=device, amp_dtype=amp,
        ),
    )  # fmt: skip
    return CachedTeacher(logits), True
