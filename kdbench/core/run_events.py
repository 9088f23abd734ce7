"""The event a tracker receives: what happened in a run (a cell started, an epoch ended, ...).

Part of the contract (``track_event`` hands one over), so it lives in the core and
tracker authors import it as ``kdbench.RunEvent`` or ``kdbench.trackers.RunEvent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("cell_started", "epoch_ended", "cell_finished", "run_finished")


@dataclass(frozen=True)
class RunEvent:
    """One event of a run; fields a kind does not use stay empty.

    ``epoch`` counts from 1 like a record's history; ``metrics`` are flat numbers
    (``lr``, ``test_top1``, ``train/<term>``, ``diag/<name>`` per epoch; ``top1``,
    ``top5`` ... when a cell finishes; ``ran``, ``failed``, ``skipped`` when the run
    finishes).
    """

    kind: str
    benchmark: str
    cell_id: str | None = None
    label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    epochs: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    status: str | None = None
    record: dict[str, Any] | None = None
