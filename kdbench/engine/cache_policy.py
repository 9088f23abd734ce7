"""Where a group's teacher outputs come from: a forward per batch, or the logit cache.

The exact logit cache replays the teacher's logits for the same augmented batches; it
is used when asked (``logit_cache = "on"``) or, with ``"auto"``, when it pays: when its
logits are already in the results folder's store (:mod:`kdbench.engine.logit_store`),
or when computing them costs no more teacher passes than the run's cells that can read
them would make, a lockstep group's cells sharing one pass
(:func:`~kdbench.engine.logit_cache.worth_caching`). It is never used when a loss needs
the teacher's features, which the cache does not hold, nor for a streaming dataset,
whose continuous augmentation has no finite set of views to cache logits for.

Cells run by ``kdbench run`` keep the logits in the store, so every later cell, process
and rerun reads them; a cell run on its own (no results folder) keeps them in memory
for its process. Where ``auto`` finds the whole array too dear (more views than the
epochs that would read it), a cell run by ``kdbench run`` uses the lazily filled store
instead (:mod:`kdbench.engine.lazy_logits`): the teacher runs only on the entries of a
batch that no cell has computed yet.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from kdbench.core.data import DatasetSplits
from kdbench.core.losses import DistillationLoss
from kdbench.core.registry import Registry
from kdbench.engine.batches import Augment, SeededBatches
from kdbench.engine.context import RunContext
from kdbench.engine.features import FeatureTaps
from kdbench.engine.lazy_logits import LazyLogits, LazyTeacher
from kdbench.engine.lockstep import lockstep_key
from kdbench.engine.logit_cache import CachedTeacher, build_logit_cache, worth_caching
from kdbench.engine.logit_store import LogitStore, StoreKey
from kdbench.engine.matrix import Cell
from kdbench.engine.online_teacher import OnlineTeacher
from kdbench.engine.precision import compile_mode, compiled
from kdbench.engine.streaming import NO_LOGIT_CACHE
from kdbench.records.identity import stable_hash


def use_cache(recipe: dict[str, Any], demand: int | None = None, stored: bool = False) -> bool:
    """Whether the recipe asks for the logit cache, or leaves it to ``auto`` and it pays.

    ``demand``: the epochs of every cell of the run that can read the same logits (this
    cell's alone when unknown); ``stored``: the logits are in the store already.
    """
    setting = recipe["logit_cache"]
    augment = Augment(**recipe["augment"])
    worth = stored or worth_caching(augment, demand or recipe["epochs"])
    return setting == "on" or (setting == "auto" and worth)


def logit_demand(cells: list[Cell], registry: Registry, lockstep: bool = True) -> dict[str, int]:
    """For each cell, the teacher passes (epochs) the cells in ``cells`` that can read its
    teacher's logits would otherwise make: same teacher, dataset, views and precision, and
    a loss that needs the teacher's logits but none of its features (as far as its class
    declares). With ``lockstep``, the cells of one group share one teacher pass per batch,
    so a group counts once."""

    def shares(cell: Cell) -> bool:
        if cell.teacher is None:
            return False
        loss = registry.get("losses", cell.loss.name).obj
        own_taps = loss.required_features is not DistillationLoss.required_features
        return loss.needs_teacher and not loss.features and not own_taps

    def key(cell: Cell) -> str:
        recipe = cell.recipe
        return stable_hash([cell.teacher.id, asdict(cell.dataset), recipe["augment"],
                            recipe["amp"], recipe.get("devices", 1)])  # fmt: skip

    keys = {cell.id: key(cell) for cell in cells if shares(cell)}
    passes: dict[str, dict[str, int]] = {}  # shared logits -> teacher pass -> its epochs
    for cell in cells:
        if cell.id in keys:
            run = lockstep_key(cell) if lockstep else cell.id
            passes.setdefault(keys[cell.id], {})[run] = cell.recipe["epochs"]
    return {cell_id: sum(passes[shared].values()) for cell_id, shared in keys.items()}


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
    fingerprint: str,
    stream: SeededBatches,
    device: torch.device,
    amp: torch.dtype | None,
    folded: int,
    store: LogitStore | None = None,
    demand: int | None = None,
) -> tuple[OnlineTeacher | CachedTeacher | LazyTeacher, str | None]:
    """The group's teacher outputs, and where cached logits came from: ``None`` (a
    teacher forward per batch), ``"memory"`` (built in this process, no store),
    ``"built"`` (built by this cell, saved in the store), ``"read"`` (from the store)
    or ``"filled"`` (the lazily filled store: ``auto`` where the whole array would not
    pay, :mod:`kdbench.engine.lazy_logits`)."""
    recipe = cell.recipe
    mode = compile_mode(recipe["compile"])
    forward = compiled(teacher, mode) if mode else None
    source = OnlineTeacher(teacher, taps, amp, forward=forward)
    if taps is not None or no_cache_reason(stream):
        return source, None
    key = StoreKey.of(cell.teacher.id, fingerprint, recipe["augment"], device, folded, amp)
    stored = store is not None and store.path(key).is_file()
    if not use_cache(recipe, demand, stored):
        if recipe["logit_cache"] != "auto" or store is None:
            return source, None
        shape = (len(data.train), stream.augment.num_views, data.num_classes)
        dtype = np.float16 if device.type == "cuda" else np.float32  # as the whole array's
        name = f"{store.folder / key.name}.lazy"
        lazy = context.cached(name, lambda: LazyLogits(store, key, shape, dtype))
        return LazyTeacher(lazy, source), "filled"

    def build() -> torch.Tensor:
        return build_logit_cache(
            teacher, data.train, stream.augment, mean=torch.tensor(data.mean),
            std=torch.tensor(data.std), device=device, amp_dtype=amp,
        )  # fmt: skip

    origin = ["read" if store else "memory"]  # what an earlier cell of this process did

    def fetch() -> torch.Tensor:
        if store is None:
            return build()
        logits, origin[0] = store.get(key, build, device)
        return logits

    logits = context.cached(key.name, fetch)
    return CachedTeacher(logits), origin[0]
