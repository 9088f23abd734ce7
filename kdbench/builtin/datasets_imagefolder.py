"""Image folders in torchvision's ``ImageFolder`` layout, streamed from disk (ImageNet).

``root/train/<class>/<image>`` and ``root/val/<class>/<image>``: one folder per class,
the same class folders in both splits. Classes are the folder names in sorted order and
files are found as torchvision's ``ImageFolder`` finds them, so labels agree with it.

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

__all__ = ["imagefolder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val")


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
) -> StreamingDataset:
    """Train and val image folders under ``root``, streamed with ImageNet's standard views.

    Training views: ``RandomResizedCrop(image_size)`` and a horizontal flip; evaluation
    views (the ``val`` folder is the test split): ``Resize(resize)`` then
    ``CenterCrop(image_size)``. ``mean``/``std`` default to ImageNet's. ``workers``:
    DataLoader worker processes (default: up to 8, one core fewer than the machine's).
    ``gpu_decode``: decode JPEGs on the GPU when training on one.
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
    )
    classes = _classes(base / "train")
    train, test = (_files(base / split, classes, views) for split in SPLITS)
    return StreamingDataset(train=train, test=test, classes=classes, mean=mean, std=std)


def _classes(folder: Path) -> tuple[str, ...]:
    from torchvision.datasets.folder import find_classes

    try:
        return tuple(find_classes(str(folder))[0])
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(
            f"imagefolder: {folder} holds no class folders; expected {folder}/<class>/<image>"
        ) from exc


def _files(folder: Path, classes: tuple[str, ...], views: ImageViews) -> ImageFiles:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    index = {name: i for i, name in enumerate(classes)}
    try:
        samples = make_dataset(str(folder), index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:  # a class folder without images, or none at all
        raise DatasetNotFoundError(
            f"imagefolder: {folder}: {exc}; every class of train/ needs images in "
            f"{folder.name}/<class>/"
        ) from exc
    files = tuple(os.path.relpath(path, folder) for path, _ in samples)
    return ImageFiles(
        root=str(folder),
        files=files,
        labels=torch.tensor([label for _, label in samples], dtype=torch.int64),
        sizes=tuple(os.path.getsize(path) for path, _ in samples),
        views=views,
    )


@hookimpl
def register_datasets(register):
    register("imagefolder", imagefolder)
    # The same reader under ImageNet's name: records and published rows say "imagenet".
    register("imagenet", imagefolder, description="ImageNet-1k in ImageFolder layout under root")
