"""The event a tracker receives: what happened in a run (a cell started, an epoch ended, ...).

Part of the contract (``track_event`` hands one over), so it lives in the core and
tracker authors import it as ``kdbench.RunEvent`` or ``kdbench.trackers.RunEvent``.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def epoch_metrics(entry: Mapping[str, Any]) -> dict[str, float]:
    """A history entry as flat metrics: lr, test_top1 (when evaluated), train/<term>,
    diag/<name> (each finite diagnostic the loss reported)."""
    metrics = {"lr": float(entry["lr"])}
    if entry.get("test_top1") is not None:
        metrics["test_top1"] = float(entry["test_top1"])
    metrics.update({f"train/{name}": float(v) for name, v in entry.get("train", {}).items()})
    diagnostics = entry.get("diagnostics", {})
    metrics.update({f"diag/{name}": float(v) for name, v in diagnostics.items() if v is not None})
    return metrics


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A finished cell's metrics as flat numbers (``top1``, ``top5``, ...)."""
    return {
        k: float(v)
        for k, v in (record.get("metrics") or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
