"""Where a results folder keeps its teacher logits, and how much they take.

The engine's store (:mod:`kdbench.engine.logit_store`) writes ``<out>/logits/``; this
module only measures and removes it, without torch, for ``kdbench status`` and
``kdbench cache clear``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FOLDER = "logits"


def store_size(out_dir: str | Path) -> tuple[int, int]:
    """The number of stored logit arrays, whole or lazily filled, and their bytes on disk.

    A lazily filled array (``*.lazy.npy``, with its check words ``*.filled``) is created
    sparse, so it counts the blocks it takes, not its length."""
    folder = Path(out_dir) / FOLDER
    if not folder.is_dir():
        return 0, 0
    arrays = list(folder.glob("*.npy"))
    sparse = {*folder.glob("*.lazy.npy"), *folder.glob("*.filled")}
    return len(arrays), sum(_bytes(path, path in sparse) for path in {*arrays, *sparse})


def _bytes(path: Path, sparse: bool) -> int:
    stat = path.stat()
    blocks = getattr(stat, "st_blocks", None)  # not on Windows: the length there
    return min(stat.st_size, blocks * 512) if sparse and blocks is not None else stat.st_size


def clear_store(out_dir: str | Path) -> tuple[int, int]:
    """Remove the store; returns what it held (arrays, bytes). Logits are recomputed by
    the next cell that needs them."""
    held = store_size(out_dir)
    shutil.rmtree(Path(out_dir) / FOLDER, ignore_errors=True)
    return held
