"""Moved names keep working for at least one minor release, and say where they went.

A module that moved leaves a small shim at its old path. The shim forwards every name
to the new module through a module-level ``__getattr__`` that warns with a
``DeprecationWarning`` naming the new place, so importing the old path costs nothing
and each place that still uses an old name is told once (Python's warning registry
shows a warning once per line of code that triggers it).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any

REMOVED_IN = "0.3.0"


def moved(old: str, new: str, *, removed_in: str = REMOVED_IN, stacklevel: int = 3) -> None:
    """Warn that ``old`` moved to ``new``; ``stacklevel`` points at the caller's line."""
    warnings.warn(
        f"{old} is deprecated and will be removed in {removed_in}; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def forward(
    old: str, new: str, names: Iterable[str] | None = None, *, removed_in: str = REMOVED_IN
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the shim at ``old``: the names of module ``new``
    (only ``names`` when given), each with a warning. Any other name raises
    ``AttributeError``, as a plain module does."""
    only = None if names is None else frozenset(names)

    def __getattr__(name: str) -> Any:
        # Dunder look-ups (pickle, inspect, pytest's collection) are not uses of a name.
        if not name.startswith("__") and (only is None or name in only):
            value = getattr(importlib.import_module(new), name, _MISSING)
            if value is not _MISSING:
                moved(f"{old}.{name}", f"{new}.{name}", removed_in=removed_in)
                return value
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__


_MISSING = object()
