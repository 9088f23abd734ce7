"""The lazily filled teacher-logit store: each (image, view) computed when a batch needs it.

The whole array of :mod:`kdbench.engine.logit_store` pays when the views are no more
than the epochs that read it. With more views than that (crop padding 4 and flip: 162
views per image) most entries would never be drawn; this store computes only the
entries a batch draws that no cell has computed yet, so a run costs about what the
online teacher costs plus a write (at most that, but for :data:`MIN_ROWS`), and every
later cell, seed and process reads what earlier ones filled.

Files, in the results folder's ``logits/``: ``<key>.lazy.npy``, the ``(N, views,
classes)`` array (created sparse, so it takes disk only as it fills), ``<key>.filled``,
one uint32 check word per entry, and ``<key>.lazy.json``, the key. An entry is filled
when its check word is the checksum of its logits and its position: the logits are
written first, the word after, and a reader trusts an entry only if the two agree. So
several processes may fill one store at once (pool workers, Slurm jobs, Ray tasks on a
shared file system) without a lock per batch: two that compute the same entry write the
same bits (equal keys mean bit-identical logits), a torn or stale read fails its check
and is computed again, and so is an entry whose bytes were damaged. Only creating the
files takes the key's lock; a file that cannot be read or has the wrong shape is
created again with a warning.

Exactness on the CPU: the teacher runs in eval mode, so an image's logits do not depend
on the other images of its batch, but some kernels take another path for a batch of
one to three images (a matrix-vector product), which rounds differently. Missing
entries are therefore computed in a batch of at least :data:`MIN_ROWS` rows (padded with
zero images, whose logits are discarded), where the logits equal the training batch's
bit for bit (``tests/test_lazy_logits.py``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from kdbench.engine.batches import Batch
from kdbench.engine.logit_store import LogitStore, StoreKey, jsonable
from kdbench.engine.online_teacher import OnlineTeacher
from kdbench.records.store import atomic_path, write_json_atomic

MIN_ROWS = 16  # the fewest rows a teacher forward of missing entries runs on
ARRAY, CHECKS, NOTE = ".lazy.npy", ".filled", ".lazy.json"
_WEIGHTS = np.random.default_rng(0).integers(1, 2**63, 4096, dtype=np.uint64) | np.uint64(1)


def checksum(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """One uint32 word per row of logits, never 0 (0 marks an unfilled entry), that
    depends on every bit of the row and on its flat position in the array."""
    bits = rows.view(np.uint32 if rows.itemsize == 4 else np.uint16).astype(np.uint64)
    weights = np.resize(_WEIGHTS, bits.shape[1])
    with np.errstate(over="ignore"):  # wrapping arithmetic is the point
        mixed = (bits * weights).sum(axis=1, dtype=np.uint64)
        mixed ^= positions.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        mixed ^= mixed >> np.uint64(31)
    return (mixed % np.uint64(2**32 - 1) + np.uint64(1)).astype(np.uint32)


class LazyLogits:
    """A store array filled entry by entry, memory-mapped for reading and writing."""

    def __init__(self, store: LogitStore, key: StoreKey, shape: tuple[int, int, int],
                 dtype: np.dtype) -> None:  # fmt: skip
        self.key, self.shape, self.dtype = key, tuple(shape), np.dtype(dtype)
        self.base = store.folder / key.name
        self.array, self.checks = self._open()

    def paths(self) -> tuple[Path, Path, Path]:
        return tuple(self.base.with_name(self.base.name + end) for end in (ARRAY, CHECKS, NOTE))

    def lookup(self, images: np.ndarray, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored logits of the entries (a copy) and which of them are filled."""
        rows = self.array[images, views]
        words = self.checks[images, views]
        filled = (words != 0) & (words == checksum(rows, self._positions(images, views)))
        return rows, filled

    def fill(self, images: np.ndarray, views: np.ndarray, rows: np.ndarray) -> None:
        """Write entries: the logits, then their check words."""
        self.array[images, views] = rows
        self.checks[images, views] = checksum(rows, self._positions(images, views))

    def _positions(self, images: np.ndarray, views: np.ndarray) -> np.ndarray:
        return images.astype(np.int64) * self.shape[1] + views

    def _open(self) -> tuple[np.memmap, np.memmap]:
        found = self._read()
        if found is not None:
            return found
        self.base.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.base) + ".lazy.lock"):
            found = self._read(warn=False)  # another process created it while this one waited
            if found is None:
                self._create()
                found = self._read(warn=False)
        if found is None:
            raise OSError(f"teacher logits {self.paths()[0]} cannot be opened after creation")
        return found

    def _read(self, warn: bool = True) -> tuple[np.memmap, np.memmap] | None:
        array_path, checks_path, note_path = self.paths()
        if not array_path.is_file():
            return None
        try:
            note = json.loads(note_path.read_text(encoding="utf-8"))
            # "r" first: a mapping for writing would silently extend a truncated file
            array, checks = (np.load(p, mmap_mode="r", allow_pickle=False)
                             for p in (array_path, checks_path))  # fmt: skip
            if note["key"] != jsonable(self.key) or array.shape != self.shape:
                raise ValueError(f"shape {list(array.shape)} or key differs from its note")
            if array.dtype != self.dtype or checks.shape != self.shape[:2]:
                raise ValueError(f"dtype {array.dtype} or check words {checks.shape} differ")
        except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
            if warn:
                warnings.warn(f"kdbench: teacher logits {array_path} are unusable ({exc}); "
                              "starting them again", stacklevel=3)  # fmt: skip
            return None
        return (np.load(array_path, mmap_mode="r+", allow_pickle=False),
                np.load(checks_path, mmap_mode="r+", allow_pickle=False))  # fmt: skip

    def _create(self) -> None:
        """Check words first (all unfilled), then the array, each renamed into place: a
        reader that meets a new file beside an old one finds no entry whose check agrees."""
        array_path, checks_path, note_path = self.paths()
        write_json_atomic(note_path, {"key": jsonable(self.key), "shape": list(self.shape),
                                      "dtype": str(self.dtype)})  # fmt: skip
        for path, shape, dtype in ((checks_path, self.shape[:2], np.uint32),
                                   (array_path, self.shape, self.dtype)):  # fmt: skip
            with atomic_path(path) as tmp:
                # written sparse: the file takes disk only as entries are filled
                np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape).flush()


class LazyTeacher:
    """Answers a batch from a lazily filled store, running the teacher only on the
    entries no cell has filled yet, and writing them for every later one."""

    def __init__(self, logits: LazyLogits, online: OnlineTeacher) -> None:
        self.logits, self.online = logits, online
        self.computed = self.read = 0

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch.indices.cpu().numpy()
        views = batch.views.cpu().numpy() if batch.views is not None else np.zeros_like(images)
        rows, filled = self.logits.lookup(images, views)
        missing = np.flatnonzero(~filled)
        if missing.size:
            chosen = torch.from_numpy(missing).to(batch.inputs.device)
            fresh = teacher_rows(self.online, batch.inputs[chosen])
            fresh = fresh.cpu().numpy().astype(self.logits.dtype)
            rows[missing] = fresh
            self.logits.fill(images[missing], views[missing], fresh)
        self.computed += int(missing.size)
        self.read += len(images) - int(missing.size)
        return torch.from_numpy(rows).to(batch.inputs.device).float(), {}

    def entries(self) -> dict[str, Any]:
        """For the record: entries this group's teacher computed, and entries it read."""
        return {"computed": self.computed, "read": self.read}


def teacher_rows(online: OnlineTeacher, inputs: torch.Tensor) -> torch.Tensor:
    """The teacher's logits for ``inputs``, from a forward of at least :data:`MIN_ROWS`
    rows (padded with zero images; see the module's note on exactness)."""
    count = len(inputs)
    if count < MIN_ROWS:
        inputs = torch.cat([inputs, inputs.new_zeros((MIN_ROWS - count, *inputs.shape[1:]))])
    logits, _ = online(Batch(inputs, None, None, None))  # type: ignore[arg-type]
    return logits[:count]
