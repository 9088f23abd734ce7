"""Fashion-MNIST, read from its four original idx files.

The files are looked for in ``root`` (Debian's ``dataset-fashion-mnist`` package puts
them in ``/usr/share/datasets/fashion-mnist``) and then in torchvision's layout
``root/FashionMNIST/raw``; each may be gzipped or not. The idx parser is our own and
strict (magic number, dimensions and byte count must agree), so a damaged file fails
with its name instead of loading as garbage, and it reads whole files with
``numpy.frombuffer``: the full dataset loads in well under a second.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from kdbench import PositiveInt, hookimpl
from kdbench.builtin._subsets import subset
from kdbench.builtin._torchvision_download import torchvision_download
from kdbench.core.data import DatasetSplits, Split
from kdbench.core.errors import DatasetNotFoundError, KdbenchError

__all__ = ["CLASSES", "DEFAULT_ROOT", "channel_stats", "fashion_mnist", "read_idx"]

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
IMAGE_SIZE = 28

# (images, labels) file names per split, without the optional ".gz".
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, *, magic: int) -> np.ndarray:
    """One idx file (gzipped or not) as a writable uint8 array of the dimensions it declares.

    Raises :class:`KdbenchError` naming the file when the magic number is not ``magic``
    or the header's dimensions do not match the number of bytes that follow.
    """
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise KdbenchError(f"{path}: corrupt gzip file ({exc})") from exc
    if len(data) < 4:
        raise KdbenchError(f"{path}: too short for an idx file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise KdbenchError(
            f"{path}: not an idx file of the expected kind: magic number {found}, expected {magic}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise KdbenchError(f"{path}: truncated idx header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise KdbenchError(
            f"{path}: idx header declares dimensions {dims} ({expected} bytes) but "
            f"{len(data) - header} bytes follow"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _read_split(images_path: Path, labels_path: Path) -> Split:
    images = read_idx(images_path, magic=IMAGES_MAGIC)
    labels = read_idx(labels_path, magic=LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise KdbenchError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"Fashion-MNIST's are {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if len(labels) != len(images):
        raise KdbenchError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
        )
    if len(labels) and labels.max() >= len(CLASSES):
        raise KdbenchError(f"{labels_path}: label {labels.max()} is not one of 0..9")
    return Split(
        torch.from_numpy(images).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std on the [0, 1] scale of uint8 ``(N, C, H, W)`` images.

    Computed from a 256-bin histogram per channel: exact in float64 and several times
    faster than converting tens of millions of pixels to floats.
    """
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * levels).sum() / total
        var = (counts * (levels - mean).square()).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def _find_files(folder: Path) -> tuple[dict[str, tuple[Path, Path]], list[str]]:
    """The split files found in ``folder`` (uncompressed preferred) and the names missing."""
    found: dict[str, tuple[Path, Path]] = {}
    missing: list[str] = []
    for split, names in FILES.items():
        paths = []
        for name in names:
            path = next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
            if path is None:
                missing.append(f"{name}[.gz]")
            else:
                paths.append(path)
        if len(paths) == 2:
            found[split] = (paths[0], paths[1])
    return found, missing


def _locate(root: Path) -> tuple[dict[str, tuple[Path, Path]], str]:
    """The first folder holding all four files, or ``({}, what was missing where)``."""
    report = []
    for folder in (root, root / "FashionMNIST" / "raw"):
        if not folder.is_dir():
            report.append(f"{folder} (no such folder)")
            continue
        found, missing = _find_files(folder)
        if not missing:
            return found, ""
        report.append(f"{folder} (missing {', '.join(missing)})")
    return {}, "; ".join(report)


def fashion_mnist(
    *,
    root: str = DEFAULT_ROOT,
    download: bool = False,
    train_subset: PositiveInt | None = None,
    test_subset: PositiveInt | None = None,
) -> DatasetSplits:
    """Fashion-MNIST: 60k/10k 28x28 grey clothing images in 10 classes, from idx files.

    ``root``: folder with the four idx files (gzipped or not), or with torchvision's
    ``FashionMNIST/raw``. ``download``: when the files are missing, fetch them with
    torchvision into ``root/FashionMNIST/raw``. ``train_subset`` / ``test_subset``: use
    only that many images, the first of each class in file order with the class
    proportions kept (deterministic, no seed). Mean and std are computed from the whole
    train split, so subsets normalise exactly like the full dataset.
    """
    folder = Path(root).expanduser()
    files, report = _locate(folder)
    if not files and download:
        torchvision_download(
            "FashionMNIST", folder, dataset="fashion_mnist", into=folder / "FashionMNIST" / "raw"
        )
        files, report = _locate(folder)
    if not files:
        raise DatasetNotFoundError(
            f"fashion_mnist: Fashion-MNIST idx files not found; looked in {report}. "
            "Get them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs "
            f"to {DEFAULT_ROOT}), or set `download = true` in [datasets.fashion_mnist], or "
            "point `root` at a folder with the idx files"
        )
    train = _read_split(*files["train"])
    test = _read_split(*files["test"])
    mean, std = channel_stats(train.images)
    return DatasetSplits(
        train=subset(train, train_subset, param="train_subset"),
        test=subset(test, test_subset, param="test_subset"),
        classes=CLASSES,
        mean=mean,
        std=std,
    )


@hookimpl
def register_datasets(register):
    register("fashion_mnist", fashion_mnist)
