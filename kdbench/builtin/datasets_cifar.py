"""CIFAR-10 and CIFAR-100 from torchvision's on-disk layout under ``root``.

``root/cifar-10-batches-py`` (``data_batch_1``..``5``, ``test_batch``, ``batches.meta``)
and ``root/cifar-100-python`` (``train``, ``test``, ``meta``) hold the python pickles
published by the CIFAR authors. torchvision is used to *download* them; the pickles are
read here rather than through ``torchvision.datasets.CIFAR10``/``CIFAR100``, because
those verify every file's md5 on each construction, which rejects any copy that is not
byte-identical to the published archive (small test fixtures included) and hashes
~180 MB per load. Instead the contents are checked: ``data`` must be uint8
``N x 3072`` with one label per row, and labels must name a class in the meta file.
Each row is the red, green and blue 32x32 planes in turn, so it reshapes directly to
``(3, 32, 32)``.

Note that unpickling runs code chosen by whoever wrote the file: only point ``root`` at
data you trust (torchvision's loader has the same property).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench import PositiveInt, hookimpl
from kdbench.builtin._subsets import subset
from kdbench.builtin._torchvision_download import torchvision_download
from kdbench.core.data import DatasetSplits, Split
from kdbench.core.errors import DatasetNotFoundError, KdbenchError

__all__ = ["cifar10", "cifar100"]

DEFAULT_ROOT = "data/"


@dataclass(frozen=True)
class _Layout:
    """Where one CIFAR variant keeps its files and what the pickles call things."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    torchvision_class: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


CIFAR10 = _Layout(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    torchvision_class="CIFAR10",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)

CIFAR100 = _Layout(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    torchvision_class="CIFAR100",
    mean=(0.5071, 0.4867, 0.4408),
    std=(0.2675, 0.2565, 0.2761),
)


def _read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (files written by Python 3 use bytes keys)."""
    try:
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # unpickling garbage can raise almost anything
        raise KdbenchError(f"{path}: not a readable CIFAR pickle ({exc!r})") from exc
    if not isinstance(entry, dict):
        raise KdbenchError(f"{path}: expected a pickled dict, found {type(entry).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_batch(path: Path, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    entry = _read_pickle(path)
    if "data" not in entry or layout.label_key not in entry:
        raise KdbenchError(
            f"{path}: expected keys 'data' and '{layout.label_key}', found {sorted(entry)}"
        )
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise KdbenchError(f"{path}: 'data' must be a uint8 N x 3072 array")
    if data.shape[1] != 3 * 32 * 32:
        raise KdbenchError(f"{path}: 'data' rows hold {data.shape[1]} bytes, expected 3072")
    labels = np.asarray(entry[layout.label_key], dtype=np.int64)
    if labels.shape != (len(data),):
        raise KdbenchError(f"{path}: {labels.size} '{layout.label_key}' for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise KdbenchError(
            f"{path}: labels must lie in 0..{layout.num_classes - 1}, "
            f"found {labels.min()}..{labels.max()}"
        )
    return data, labels


def _read_split(folder: Path, files: tuple[str, ...], layout: _Layout) -> Split:
    batches = [_read_batch(folder / name, layout) for name in files]
    images = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in batches])
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def _read_classes(path: Path, layout: _Layout) -> tuple[str, ...]:
    names = _read_pickle(path).get(layout.names_key)
    if not isinstance(names, list | tuple) or len(names) != layout.num_classes:
        raise KdbenchError(f"{path}: '{layout.names_key}' must list {layout.num_classes} names")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _missing(folder: Path, layout: _Layout) -> list[str]:
    names = (*layout.train_files, *layout.test_files, layout.meta_file)
    return [name for name in names if not (folder / name).is_file()]


def _load(
    layout: _Layout,
    root: str,
    download: bool,
    train_subset: int | None,
    test_subset: int | None,
) -> DatasetSplits:
    base = Path(root).expanduser()
    folder = base / layout.folder
    missing = _missing(folder, layout)
    if missing and download:
        torchvision_download(layout.torchvision_class, base, dataset=layout.name, into=base)
        missing = _missing(folder, layout)
    if missing:
        where = "the folder does not exist" if not folder.is_dir() else f"missing {missing}"
        raise DatasetNotFoundError(
            f"{layout.name}: files not found in {folder} ({where}). Set `download = true` "
            f"in [datasets.{layout.name}] where there is network (torchvision fetches it "
            f"into {base}), or copy torchvision's `{layout.folder}` folder into `root` "
            f"(currently {base})"
        )
    return DatasetSplits(
        train=subset(
            _read_split(folder, layout.train_files, layout), train_subset, param="train_subset"
        ),
        test=subset(
            _read_split(folder, layout.test_files, layout), test_subset, param="test_subset"
        ),
        classes=_read_classes(folder / layout.meta_file, layout),
        mean=layout.mean,
        std=layout.std,
    )


def cifar10(
    *,
    root: str = DEFAULT_ROOT,
    download: bool = False,
    train_subset: PositiveInt | None = None,
    test_subset: PositiveInt | None = None,
) -> DatasetSplits:
    """CIFAR-10: 50k/10k 32x32 colour images in 10 classes, torchvision's files under root.

    ``root``: folder containing ``cifar-10-batches-py``. ``download``: when files are
    missing, fetch them with torchvision into ``root``. ``train_subset`` /
    ``test_subset``: use only that many images, the first of each class in file order
    with the class proportions kept (deterministic, no seed). Mean and std are the
    standard CIFAR-10 values.
    """
    return _load(CIFAR10, root, download, train_subset, test_subset)


def cifar100(
    *,
    root: str = DEFAULT_ROOT,
    download: bool = False,
    train_subset: PositiveInt | None = None,
    test_subset: PositiveInt | None = None,
) -> DatasetSplits:
    """CIFAR-100: 50k/10k 32x32 colour images in 100 fine classes, torchvision's files.

    ``root``: folder containing ``cifar-100-python``. ``download``: when files are
    missing, fetch them with torchvision into ``root``. ``train_subset`` /
    ``test_subset``: use only that many images, the first of each class in file order
    with the class proportions kept (deterministic, no seed). Labels are the fine labels.
    Mean and std are the standard CIFAR-100 values.
    """
    return _load(CIFAR100, root, download, train_subset, test_subset)


@hookimpl
def register_datasets(register):
    register("cifar10", cifar10)
    register("cifar100", cifar100)
