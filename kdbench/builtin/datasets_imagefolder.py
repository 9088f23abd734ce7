"""Image folders in torchvision's ``ImageFolder`` layout, streamed from disk (ImageNet).

``root/train/<class>/<image>`` and ``root/val/<class>/<image>``: one folder per class,
the same class folders in both splits. Classes are the folder names in sorted order and
files are found in torchvision's ``ImageFolder`` order, so labels agree with it, except
that hidden entries are skipped and links are followed only inside ``root`` and never
into a folder twice (:mod:`kdbench.core.image_folder_walk`).

The factory returns a :class:`kdbench.StreamingDataset`: images stay on disk and are
decoded and augmented by DataLoader workers while training (ImageNet's 1.28 M images
do not fit in memory). An example of a streaming dataset plugin: it uses only the
public API.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from kdbench import (
    DatasetNotFoundError,
    ImageFiles,
    ImageViews,
    NonNegativeInt,
    PositiveInt,
    StreamingDataset,
    hookimpl,
)
from kdbench.core.image_check import find_problems
from kdbench.core.image_files import ImageFileError
from kdbench.core.image_folder_walk import FolderWalk
from kdbench.core.image_header import MAX_PIXELS

__all__ = ["imagefolder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val")
SHOWN = 8  # files named in the error line; the rest are counted


def default_workers() -> int:
    """Up to 8 DataLoader workers, leaving the training process a core of its own."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def imagefolder(
    *,
    root: str = "data/imagenet/",
    image_size: PositiveInt = 224,
    resize: PositiveInt = 256,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    workers: NonNegativeInt | None = None,
    gpu_decode: bool = True,
    max_pixels: PositiveInt = MAX_PIXELS,
) -> StreamingDataset:
    """Train and val image folders under ``root``, streamed with ImageNet's standard views.

    Training views: ``RandomResizedCrop(image_size)`` and a horizontal flip; evaluation
    views (the ``val`` folder is the test split): ``Resize(resize)`` then
    ``CenterCrop(image_size)``. ``mean``/``std`` default to ImageNet's. ``workers``:
    DataLoader worker processes (default: up to 8, one core fewer than the machine's).
    ``gpu_decode``: decode JPEGs on the GPU when training on one. ``max_pixels``: an
    image whose header claims more pixels is refused before it is decoded.

    Every file is checked when the dataset is built (so by ``validate`` and before a run
    trains): an empty, non-image, truncated or oversized file is one error line naming
    it (see :mod:`kdbench.core.image_check` for what is read).
    """
    if image_size > resize:
        raise ValueError(f"image_size ({image_size}) must not exceed resize ({resize})")
    base = Path(root).expanduser()
    missing = [split for split in SPLITS if not (base / split).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"imagefolder: no {' and no '.join(f'{s}/' for s in missing)} folder in {base}; "
            f"put the data in torchvision's ImageFolder layout (root/train/<class>/*.JPEG "
            f"and root/val/<class>/*.JPEG; for ImageNet, sort the val images into class "
            f"folders, e.g. with the ILSVRC2012 devkit's labels) and set `root` in "
            f"[datasets.imagefolder]"
        )
    views = ImageViews(
        image_size=image_size,
        resize=resize,
        workers=default_workers() if workers is None else workers,
        gpu_decode=gpu_decode,
        max_pixels=max_pixels,
    )
    classes, train, test = _splits(base, views)
    return StreamingDataset(train=train, test=test, classes=classes, mean=mean, std=std)


def _splits(base: Path, views: ImageViews) -> tuple[tuple[str, ...], ImageFiles, ImageFiles]:
    """The classes (train's folders) and both splits' files, walked under the rules."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    walks = {split: FolderWalk(base / split, base, IMG_EXTENSIONS) for split in SPLITS}
    classes = tuple(walks["train"].classes())
    if not classes:
        raise DatasetNotFoundError(
            f"imagefolder: {base / 'train'} holds no class folders; expected "
            f"{base / 'train'}/<class>/<image>{_left_out(walks['train'])}"
        )
    train, test = (_files(walks[split], classes, views) for split in SPLITS)
    _check(base, {"train": train, "val": test}, views.max_pixels)
    return classes, train, test


def _check(base: Path, splits: dict[str, ImageFiles], max_pixels: int) -> None:
    """Every file of both splits checked; all that cannot be trained on named in one line."""
    problems = [
        (f"{split}/{name}", why)
        for split, files in splits.items()
        for name, why in find_problems(files.root, files.files, max_pixels)
    ]
    if problems:
        total = sum(len(files) for files in splits.values())
        shown = "; ".join(f"{name}: {why}" for name, why in problems[:SHOWN])
        more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise ImageFileError(
            f"imagefolder: {len(problems)} of {total} files under {base} cannot be trained "
            f"on: {shown}{more}; remove or replace them"
        )


def _files(walk: FolderWalk, classes: tuple[str, ...], views: ImageViews) -> ImageFiles:
    samples = walk.samples(list(classes))
    empty = sorted(set(classes) - {classes[label] for _, label in samples})
    if empty:
        raise DatasetNotFoundError(
            f"imagefolder: {walk.top}: no images for the classes {', '.join(empty[:5])}"
            f"{' ...' if len(empty) > 5 else ''}; every class of train/ needs images in "
            f"{walk.top.name}/<class>/{_left_out(walk)}"
        )
    files = tuple(path for path, _ in samples)
    return ImageFiles(
        root=str(walk.top),
        files=files,
        labels=torch.tensor([label for _, label in samples], dtype=torch.int64),
        sizes=tuple(os.path.getsize(walk.top / path) for path in files),
        views=views,
    )


def _left_out(walk: FolderWalk) -> str:
    return f" (left out: {walk.note()})" if walk.skipped else ""


@hookimpl
def register_datasets(register):
    register("imagefolder", imagefolder)
    # The same reader under ImageNet's name: records and published rows say "imagenet".
    register("imagenet", imagefolder, description="ImageNet-1k in ImageFolder layout under root")
