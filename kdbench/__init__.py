"""kdbench: a plugin-based benchmark harness for knowledge distillation.

The public API for plugin authors is what this module exports; everything else is
internal and may change.
"""

from __future__ import annotations

import importlib.metadata as _metadata
from typing import TYPE_CHECKING, Any

from kdbench.core.errors import ConfigError, DatasetNotFoundError, KdbenchError, PluginError
from kdbench.core.hookspecs import hookimpl
from kdbench.core.params import (
    Fraction,
    Momentum,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Temperature,
    Weight,
)
from kdbench.core.run_events import RunEvent

if TYPE_CHECKING:
    from kdbench.core.data import DatasetSplits, Split
    from kdbench.core.image_files import ImageFiles, ImageViews, StreamingDataset
    from kdbench.core.losses import DistillationLoss, LossContext, LossInputs, TapPair, Taps
    from kdbench.engine.distributed import gather_rows

try:  # one source: the installed distribution's metadata, from pyproject.toml
    __version__ = _metadata.version("kdbench")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

# Imported on first use: they need torch, and the command line must be up (and answer
# Ctrl-C with one line) before torch's seconds of importing start.
_LAZY = {
    "DatasetSplits": "kdbench.core.data",
    "Split": "kdbench.core.data",
    "ImageFiles": "kdbench.core.image_files",
    "ImageViews": "kdbench.core.image_files",
    "StreamingDataset": "kdbench.core.image_files",
    "DistillationLoss": "kdbench.core.losses",
    "LossContext": "kdbench.core.losses",
    "LossInputs": "kdbench.core.losses",
    "TapPair": "kdbench.core.losses",
    "Taps": "kdbench.core.losses",
    "load_student": "kdbench.engine.students",
    "gather_rows": "kdbench.engine.distributed",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'kdbench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "DatasetNotFoundError",
    "DatasetSplits",
    "DistillationLoss",
    "Fraction",
    "ImageFiles",
    "ImageViews",
    "KdbenchError",
    "LossContext",
    "LossInputs",
    "Momentum",
    "NonNegativeInt",
    "PluginError",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "RunEvent",
    "Split",
    "StreamingDataset",
    "TapPair",
    "Taps",
    "Temperature",
    "Weight",
    "__version__",
    "gather_rows",
    "hookimpl",
    "load_student",
]
