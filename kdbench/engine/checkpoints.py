"""Weight files: read safely (tensors and plain containers, never code), fitted to a model.

Every file goes through ``torch.load(..., weights_only=True)``, which refuses any
pickled class or function outside PyTorch's allowlist. Two additions, neither of which
runs code: ``argparse.Namespace``, because the published CIFAR teachers' training
scripts store their options as one beside the weights (a Namespace carries only
attributes), and numpy's numeric scalars, because those scripts decay the learning rate
with numpy, so the optimizer state of every file written after the first decay holds a
``numpy.float64`` (a scalar is rebuilt from its dtype and raw bytes; object and
structured dtypes stay refused). Whatever is wrong with a file becomes one
``KdbenchError`` line that names it.
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdbench.core.errors import KdbenchError

__all__ = ["SAFE_GLOBALS", "WRAPPER_KEYS", "first_line", "load_weights", "read_state_dict"]


def _numpy_scalars() -> tuple[Any, ...]:
    """What pickling a numeric numpy scalar names, under numpy 2's and numpy 1's paths.

    A pickled ``np.float64(0.005)`` is ``scalar(dtype('f8'), raw bytes)``, and its dtype
    is rebuilt through ``numpy.dtype`` and then given its state, which PyTorch allows
    only for listed classes: each numeric dtype's class. Numpy 1 files name the
    function ``numpy.core.multiarray.scalar``.
    """
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtype_classes = tuple(type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG")
    return (
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        *dtype_classes,
    )


# Classes and functions a weight file may pickle besides PyTorch's own allowlist.
SAFE_GLOBALS = (argparse.Namespace, *_numpy_scalars())
# Keys under which training scripts store the weights next to the epoch, the accuracy,
# the optimizer state or their options.
WRAPPER_KEYS = ("state_dict", "model", "net")
# torch.nn.DataParallel / DistributedDataParallel prefix every key with this.
_PARALLEL_PREFIX = "module."
# mdistiller's full training files hold its distiller's weights: the network trained
# alone (its ``Vanilla`` distiller) is the distiller's ``student``.
_DISTILLER_PREFIX = "student."


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` weights in ``path``, on the CPU.

    Accepts a bare state dict or one under ``state_dict`` / ``model`` / ``net`` (with
    anything else beside it), and strips the ``module.`` prefix of data-parallel
    wrappers and the ``student.`` prefix every key of mdistiller's training files has.
    Missing, empty, truncated or unsafe files and files without weights raise
    ``KdbenchError``.
    """
    path = Path(path)
    if not path.exists():
        raise KdbenchError(f"checkpoint '{path}' does not exist")
    if path.is_dir():
        raise KdbenchError(f"checkpoint '{path}' is a directory, expected a weights file")
    if path.stat().st_size == 0:
        raise KdbenchError(f"checkpoint '{path}' is empty (0 bytes)")
    return _state_dict_of(_load(path), path)


def _load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # "GLOBAL m.f was not an allowed global", or "... whose module m is blocked"
        found = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module)", str(exc))
        what = f"the object '{found[1]}'" if found else "an object PyTorch does not allow"
        raise KdbenchError(
            f"checkpoint '{path}' is refused: it pickles {what}, and only tensors, plain "
            "containers, numbers (numpy's too) and argparse.Namespace are loaded (save the "
            "state_dict alone)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for unreadable files
        raise KdbenchError(
            f"cannot read checkpoint '{path}': not a complete PyTorch weights file "
            f"({first_line(exc)})"
        ) from exc


def _state_dict_of(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict):
        for key in WRAPPER_KEYS:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    tensors = isinstance(checkpoint, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items()
    )
    if not tensors or not checkpoint:
        raise KdbenchError(
            f"checkpoint '{path}' holds no state_dict (expected a dict of tensors, or one "
            f"under {' / '.join(repr(k) for k in WRAPPER_KEYS)})"
        )
    state = {k.removeprefix(_PARALLEL_PREFIX): v for k, v in checkpoint.items()}
    if all(k.startswith(_DISTILLER_PREFIX) for k in state):
        state = {k.removeprefix(_DISTILLER_PREFIX): v for k, v in state.items()}
    return state


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """Load ``state`` strictly, or say in one line why it does not fit.

    Keys the model lacks are given one chance through the model's own
    ``load_state_dict`` pre-hooks, where a model renames the keys of its older layouts.
    """
    problems = _incompatibilities(model, state)
    if not problems:
        model.load_state_dict(state)
        return
    if not any(label.startswith("shape") for label, _ in problems):
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError:  # a renamed key's shape does not fit either
            result = None
        if result is not None and not result.missing_keys and not result.unexpected_keys:
            return
    raise KdbenchError(
        f"checkpoint '{path}' does not fit model '{name}' on this dataset: "
        + " | ".join(f"{label}: {_listed(items)}" for label, items in problems)
    )


def _incompatibilities(
    model: nn.Module, state: dict[str, torch.Tensor]
) -> list[tuple[str, list[str]]]:
    """(what, keys) for each kind of difference between the model's keys and ``state``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    kinds = (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches (checkpoint vs model)", mismatched),
    )
    return [(label, items) for label, items in kinds if items]


def _listed(items: list[str], limit: int = 5) -> str:
    return "; ".join(items[:limit]) + (
        f" (+{len(items) - limit} more)" if len(items) > limit else ""
    )
