"""The plugin author's test kit: what the harness relies on, checked in one call each.

``check_loss``, ``check_model``, ``check_dataset``, ``check_executor``, ``check_tracker``,
``check_format`` and ``check_command`` run a plugin's object the way kdbench will (tiny
real models and data, real records, on the CPU) and fail with an :class:`AssertionError`
that says what to fix. ``tiny_dataset``, ``tiny_teacher`` and ``tiny_student`` build
the inputs (installed kdbench also makes them pytest fixtures: ``kdbench.testing.fixtures``,
entry point ``pytest11``); ``sample_results`` and ``sample_leaderboard`` are real results::

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
    from kdbench.core.features import FeatureTaps
    from kdbench.testing.checks import (
        Tapped,
        check_dataset,
        check_executor,
        check_loss,
        check_model,
        registered_taps,
        tiny_dataset,
        tiny_student,
        tiny_teacher,
    )
    from kdbench.testing.report_checks import check_command, check_format, sample_leaderboard
    from kdbench.testing.samples import sample_record, sample_results
    from kdbench.testing.tracker_checks import check_tracker, sample_events

# Each name and the module that holds it (loaded when the name is first asked for).
_HOMES = {
    "FeatureTaps": "kdbench.testing.checks",
    "Tapped": "kdbench.testing.checks",
    "check_command": "kdbench.testing.report_checks",
    "check_dataset": "kdbench.testing.checks",
    "check_executor": "kdbench.testing.checks",
    "check_format": "kdbench.testing.report_checks",
    "check_loss": "kdbench.testing.checks",
    "check_model": "kdbench.testing.checks",
    "check_tracker": "kdbench.testing.tracker_checks",
    "registered_taps": "kdbench.testing.checks",
    "sample_events": "kdbench.testing.tracker_checks",
    "sample_leaderboard": "kdbench.testing.report_checks",
    "sample_record": "kdbench.testing.samples",
    "sample_results": "kdbench.testing.samples",
    "tiny_dataset": "kdbench.testing.checks",
    "tiny_student": "kdbench.testing.checks",
    "tiny_teacher": "kdbench.testing.checks",
}

__all__ = [
    "FeatureTaps",
    "Tapped",
    "check_command",
    "check_dataset",
    "check_executor",
    "check_format",
    "check_loss",
    "check_model",
    "check_tracker",
    "registered_taps",
    "sample_events",
    "sample_leaderboard",
    "sample_record",
    "sample_results",
    "tiny_dataset",
    "tiny_student",
    "tiny_teacher",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'kdbench.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
