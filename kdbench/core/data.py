"""What a dataset plugin returns: in-memory uint8 splits and their metadata.

The types plugins build live in the core, torch-typed but free of the engine; the
batching and augmentation the harness applies to them are in
:mod:`kdbench.engine.batches`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """One split: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError("labels must be a 1-D tensor with one label per image")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset as a plugin hands it over.

    ``mean`` and ``std`` are per channel on the [0, 1] scale and are used to normalise
    inputs. ``classes`` names the classes in label order.
    """

    train: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train.images.shape[2:])

    def fingerprint(self) -> str:
        """sha256 over both splits' bytes: which data a record was measured on."""
        digest = hashlib.sha256()
        for split in (self.train, self.test):
            digest.update(split.images.contiguous().numpy().tobytes())
            digest.update(split.labels.to(torch.int64).contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]
