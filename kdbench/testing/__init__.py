"""The plugin author's test kit: what the harness relies on, checked in one call each.

``check_loss``, ``check_model``, ``check_dataset`` and ``check_executor`` run a plugin's
object the way kdbench will (tiny real models and data, on the CPU) and fail with an
:class:`AssertionError` that says what to fix. ``tiny_dataset``, ``tiny_teacher`` and
``tiny_student`` build the inputs; installed kdbench also makes them pytest fixtures
(``kdbench.testing.fixtures``, entry point ``pytest11``)::

    from kdbench.testing import check_loss

    def test_my_loss_keeps_the_harness_contract():
        check_loss(MyLoss, {"weight": 2.0})

Imported on first use, so that pytest's start-up in any project with kdbench installed
does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdbench.engine.features import FeatureTaps
    from kdbench.testing.checks import (
        Tapped,
        check_dataset,
        check_executor,
        check_loss,
        check_model,
        tiny_dataset,
        tiny_student,
        tiny_teacher,
    )

__all__ = [
    "FeatureTaps",
    "Tapped",
    "check_dataset",
    "check_executor",
    "check_loss",
    "check_model",
    "tiny_dataset",
    "tiny_student",
    "tiny_teacher",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'kdbench.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module("kdbench.testing.checks"), name)
    globals()[name] = value
    return value
