"""kdbench: a plugin-based benchmark harness for knowledge distillation.

The public API for plugin authors is what this module exports; everything else is
internal and may change.
"""

from kdbench.data import DatasetSplits, Split
from kdbench.errors import ConfigError, DatasetNotFoundError, KdbenchError, PluginError
from kdbench.hookspecs import hookimpl
from kdbench.losses import DistillationLoss, LossContext, LossInputs
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

__version__ = "0.1.0"

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
    "Temperature",
    "Weight",
    "__version__",
    "hookimpl",
]
