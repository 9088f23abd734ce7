"""What a tracker plugin may use: the :class:`RunEvent` its ``track_event`` receives.

The public module for tracker authors (``docs/trackers.md``); the event type itself
lives in :mod:`kdbench.core.run_events`. It imports no torch.
"""

from __future__ import annotations

from kdbench.core.run_events import KINDS, RunEvent

__all__ = ["KINDS", "RunEvent"]
