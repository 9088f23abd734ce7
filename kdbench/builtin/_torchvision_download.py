"""Fetching a dataset's files with torchvision's downloader, failing with kdbench's error.

Only used when a benchmark sets ``download = true``; torchvision writes the files in
its own on-disk layout, which the dataset plugins then read.
"""

from __future__ import annotations

from pathlib import Path

from kdbench.core.errors import DatasetNotFoundError


def torchvision_download(class_name: str, root: Path, *, dataset: str, into: Path) -> None:
    """Run ``torchvision.datasets.<class_name>(root, download=True)``.

    ``into`` is the folder the files land in, named in the error when the download fails.
    """
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, class_name)(str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:
        raise DatasetNotFoundError(
            f"{dataset}: download into {into} failed "
            f"(is `root` writable and the network reachable?): {exc}"
        ) from exc
