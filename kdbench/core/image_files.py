"""What a streaming dataset plugin returns: image files on disk, not tensors in memory.

A dataset too big for memory (ImageNet's 1.28 M images) hands over a
:class:`StreamingDataset` instead of a :class:`kdbench.DatasetSplits`: per split, the
image files (paths relative to a root, with their sizes and labels) and the views the
harness makes of them. The engine picks the path from the type: in-memory splits are
sliced on the device; image files are read, decoded and augmented by DataLoader workers
(:mod:`kdbench.engine.streaming`).

Views are the standard ImageNet ones: for training ``RandomResizedCrop(image_size)`` and
a horizontal flip, for evaluation ``Resize(resize)`` and ``CenterCrop(image_size)``;
then normalisation with ``mean`` / ``std``. Their crops are continuous, so no finite
set of views exists and the exact teacher-logit cache is off for such datasets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from kdbench.core.errors import KdbenchError
from kdbench.core.image_header import MAX_PIXELS

__all__ = ["ImageFileError", "ImageFiles", "ImageViews", "StreamingDataset"]


class ImageFileError(KdbenchError):
    """An image file cannot be trained on (empty, not an image, truncated, too many pixels).

    Raised in one line naming the file; a DataLoader worker hands it back instead of
    raising, so it reaches the cell as this line rather than as a worker's traceback.
    """


@dataclass(frozen=True)
class ImageViews:
    """How images are turned into network inputs, and how many workers decode them.

    ``image_size``: the square crop fed to the network; ``resize``: the shorter side an
    evaluation image is resized to before its centre crop; ``scale``: the area range of
    the training crop (torchvision's default); ``workers``: DataLoader worker processes
    (0 decodes in the training process); ``gpu_decode``: decode JPEGs on the GPU when
    training on one and torchvision can (else on the CPU, in the workers); ``max_pixels``:
    the most pixels an image may have, read from its header before it is decoded (a
    decompression bomb is refused, not decoded).
    """

    image_size: int = 224
    resize: int = 256
    scale: tuple[float, float] = (0.08, 1.0)
    workers: int = 0
    gpu_decode: bool = True
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        if not 0 < self.image_size <= self.resize:
            raise ValueError("views need 0 < image_size <= resize")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError("views need 0 < scale[0] <= scale[1] <= 1")
        if self.workers < 0:
            raise ValueError("views need workers >= 0")
        if self.max_pixels < 1:
            raise ValueError("views need max_pixels >= 1")


@dataclass(frozen=True)
class ImageFiles:
    """One split as files: ``root / files[i]`` is an image of class ``labels[i]``.

    ``sizes`` (bytes per file) enter the fingerprint, so a record names the data it was
    measured on without reading every image.
    """

    root: str
    files: tuple[str, ...]
    labels: torch.Tensor
    sizes: tuple[int, ...]
    views: ImageViews

    def __post_init__(self) -> None:
        if self.labels.ndim != 1 or len(self.labels) != len(self.files):
            raise ValueError("labels must be a 1-D tensor with one label per file")
        if len(self.sizes) != len(self.files):
            raise ValueError("sizes must hold one byte count per file")

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        return Path(self.root) / self.files[index]


@dataclass(frozen=True)
class StreamingDataset:
    """A dataset read from image files while training; the streaming twin of DatasetSplits.

    ``test`` is the split accuracy is reported on (ImageNet's ``val`` folder). Images are
    decoded to RGB, so ``in_channels`` is 3; ``mean`` and ``std`` are per channel on the
    [0, 1] scale.
    """

    train: ImageFiles
    test: ImageFiles
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.train.views.image_size
        return (size, size)

    def fingerprint(self) -> str:
        """sha256 over each split's file list (relative paths, sizes, labels) and views."""
        digest = hashlib.sha256()
        for split in (self.train, self.test):
            rows = zip(split.files, split.sizes, split.labels.tolist(), strict=True)
            for name, size, label in rows:
                digest.update(f"{name}\0{size}\0{label}\n".encode())
            views = split.views
            digest.update(f"{views.image_size} {views.resize} {views.scale}\n".encode())
        return digest.hexdigest()[:16]
