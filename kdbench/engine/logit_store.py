"""The teacher-logit store: a frozen teacher's exact logits, computed once per results folder.

A frozen teacher's logits for an (image, view) are the same in every cell, seed, pair,
rerun and process. The exact logit cache (:mod:`kdbench.engine.logit_cache`) computes
them for every training image and view; this store keeps that array in the results
folder, ``<out>/logits/<key>.npy``, so whichever cell needs it first computes it and
every later cell, in this process or any other (pool workers, Slurm jobs, Ray tasks, a
rerun next week), memory-maps it instead of running the teacher again.

The key names everything the logits depend on: the teacher's id (its weights), the
dataset's content fingerprint and split, the view set (the augmentation), BatchNorm
folding, the precision and the kind of device (a GPU model's kernels round differently
from the CPU's). Files are immutable and appear whole (written beside, then renamed),
so readers never see a partial array; a lock per key makes concurrent cells that need
the same logits wait for one builder instead of all computing them (``filelock``, which
works across processes and, with locks it supports, across the nodes of a shared file
system). A file that cannot be read, or whose shape does not match, is rebuilt and
replaced.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from kdbench.records.identity import stable_hash
from kdbench.records.logit_folder import FOLDER
from kdbench.records.store import atomic_path, write_json_atomic


@dataclass(frozen=True)
class StoreKey:
    """What a teacher's logits depend on; equal keys mean bit-identical logits."""

    teacher_id: str
    dataset: str  # the dataset's content fingerprint
    split: str
    views: dict[str, Any]  # the augmentation that defines the view set
    folded: int  # teacher BatchNorm layers folded into convolutions
    precision: str  # "fp32", "bfloat16", "float16"
    device_kind: str  # "cpu", or "cuda:<device name>"

    @classmethod
    def of(
        cls,
        teacher_id: str,
        dataset: str,
        augment: dict[str, Any],
        device: torch.device,
        folded: int,
        amp: torch.dtype | None,
    ) -> StoreKey:
        """The key of a training split's logits. The precision matters: logits computed
        under bf16 autocast differ from fp32 ones."""
        precision = str(amp).removeprefix("torch.") if amp else "fp32"
        return cls(teacher_id, dataset, "train", dict(augment), int(folded), precision,
                   device_kind(device))  # fmt: skip

    @property
    def name(self) -> str:
        return f"{self.teacher_id[:12]}-{stable_hash(asdict(self))}"


def device_kind(device: torch.device) -> str:
    """The kind of device: logits computed on another GPU model may differ in the last bits."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


class LogitStore:
    """The ``logits/`` folder of a results folder."""

    def __init__(self, out_dir: str | Path) -> None:
        self.folder = Path(out_dir) / FOLDER

    def path(self, key: StoreKey) -> Path:
        return self.folder / f"{key.name}.npy"

    def get(
        self, key: StoreKey, build: Callable[[], torch.Tensor], device: torch.device
    ) -> tuple[torch.Tensor, str]:
        """The logits of ``key`` and where they came from: ``"read"`` from the store, or
        ``"built"`` by ``build`` (then saved for every later cell)."""
        found = self._read(key, device)
        if found is not None:
            return found, "read"
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / f"{key.name}.lock")):
            found = self._read(key, device)  # another process built it while this one waited
            if found is not None:
                return found, "read"
            logits = build()
            self._write(key, logits)
        return logits, "built"

    def _read(self, key: StoreKey, device: torch.device) -> torch.Tensor | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            # Copy-on-write mapping: pages are shared between processes and read on demand;
            # nothing is ever written back to the file.
            array = np.load(path, mmap_mode="c", allow_pickle=False)
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            if list(array.shape) != meta["shape"] or meta["key"] != jsonable(key):
                raise ValueError(f"shape {list(array.shape)} or key differs from its note")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(
                f"kdbench: teacher logits {path} are unusable ({exc}); computing them again",
                stacklevel=2,
            )
            return None
        logits = torch.from_numpy(array)
        return logits if device.type == "cpu" else logits.to(device)

    def _write(self, key: StoreKey, logits: torch.Tensor) -> None:
        """The note, then the array, each beside its final name and renamed onto it: a
        reader sees a whole file or none, and a found array has its note."""
        path = self.path(key)
        note = {"key": jsonable(key), "shape": list(logits.shape), "dtype": str(logits.dtype)}
        write_json_atomic(path.with_suffix(".json"), note)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, logits.detach().cpu().numpy(), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())


def jsonable(key: StoreKey) -> dict[str, Any]:
    """The key as its note keeps it (JSON types: tuples become lists)."""
    return json.loads(json.dumps(asdict(key), sort_keys=True))
