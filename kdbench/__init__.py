"""kdbench: a plugin-based benchmark harness for knowledge distillation.

The public API for plugin authors is what this module exports; everything else is
internal and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kdbench.errors import ConfigError, DatasetNotFoundError, KdbenchError, PluginError
from kdbench.hookspecs import hookimpl
from kdbench.params import (
    Fraction,
    Momentum,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Temperature,
    Weight,
)

if TYPE_CHECKING:
    from kdbench.data import DatasetSplits, Split
    from kdbench.distributed import gather_rows
    from kdbench.losses import DistillationLoss, LossContext, LossInputs, TapPair, Taps

__version__ = "0.1.0"

# Imported on first use: they need torch, and the command line must be up (and answer
# Ctrl-C with one line) before torch's seconds of importing start.
_LAZY = {
    "DatasetSplits": "kdbench.data",
    "Split": "kdbench.data",
    "DistillationLoss": "kdbench.losses",
    "LossContext": "kdbench.losses",
    "LossInputs": "kdbench.losses",
    "TapPair": "kdbench.losses",
    "Taps": "kdbench.losses",
    "load_student": "kdbench.students",
    "gather_rows": "kdbench.distributed",
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
    "KdbenchError",
    "LossContext",
    "LossInputs",
    "Momentum",
    "NonNegativeInt",
    "PluginError",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "Split",
    "TapPair",
    "Taps",
    "Temperature",
    "Weight",
    "__version__",
    "gather_rows",
    "hookimpl",
    "load_student",
]
