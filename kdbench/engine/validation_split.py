"""The validation split a tuned benchmark selects on, carved from the training split.

Stratified (each class gives the same fraction, at least one image of a class with two
or more), seeded, and named by a hash of the held-out indices, so a record says exactly
which images its trial was scored on. The test split is never part of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from kdbench.core.data import DatasetSplits, Split
from kdbench.core.image_files import ImageFiles
from kdbench.records.identity import stable_hash


@dataclass(frozen=True)
class Carved:
    """A dataset whose ``train`` is what trials train on and ``test`` the validation split."""

    data: DatasetSplits
    index_hash: str


def held_out(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of the validation images: ``fraction`` of each class, seeded."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        count = len(members)
        take = min(max(round(fraction * count), 1 if count > 1 else 0), count - 1)
        order = torch.randperm(count, generator=generator)
        chosen.append(members[order[:take]])
    return torch.sort(torch.cat(chosen)).values


def index_hash(indices: torch.Tensor) -> str:
    """What names a validation split in records: a hash of its sorted indices."""
    return stable_hash(indices.tolist(), length=16)


def carve(data: DatasetSplits, fraction: float, seed: int) -> Carved:
    """The training split without its validation images, and those images as ``test``."""
    train = data.train
    indices = held_out(train.labels, fraction, seed)
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[indices] = False
    rest, validation = _subset(train, torch.nonzero(keep).flatten()), _subset(train, indices)
    return Carved(replace(data, train=rest, test=validation), index_hash(indices))


def _subset(split: Split | ImageFiles, indices: torch.Tensor) -> Split | ImageFiles:
    """The images of a split at ``indices``, in memory or as files."""
    if isinstance(split, Split):
        return Split(split.images[indices], split.labels[indices])
    at = indices.tolist()
    return replace(
        split,
        files=tuple(split.files[i] for i in at),
        labels=split.labels[indices],
        sizes=tuple(split.sizes[i] for i in at),
    )
