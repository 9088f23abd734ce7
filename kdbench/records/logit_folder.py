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
    """The number of stored logit arrays and their bytes on disk."""
    folder = Path(out_dir) / FOLDER
    arrays = list(folder.glob("*.npy")) if folder.is_dir() else []
    return len(arrays), sum(path.stat().st_size for path in arrays)


def clear_store(out_dir: str | Path) -> tuple[int, int]:
    """Remove the store; returns what it held (arrays, bytes). Logits are recomputed by
    the next cell that needs them."""
    held = store_size(out_dir)
    shutil.rmtree(Path(out_dir) / FOLDER, ignore_errors=True)
    return held
