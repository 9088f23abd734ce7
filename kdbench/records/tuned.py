"""A tuned benchmark's records as the rest of kdbench reads them: which published cells
have their final run, and how far the trials are (``kdbench status``). No torch, no
Optuna: the records alone."""

from __future__ import annotations

from collections.abc import Iterable

from kdbench.records.schema import Record


def final_slots(records: Iterable[Record]) -> set[str]:
    """The published cells whose selected setting has an ``ok`` final record."""
    return {
        (record.config.tune or {}).get("published_cell", "")
        for record in records
        if record.config.phase == "final" and record.status == "ok"
    }


def trial_counts(records: Iterable[Record]) -> dict[str, int]:
    """Trial records by status (ok, pruned, failed)."""
    counts: dict[str, int] = {}
    for record in records:
        if record.config.phase == "trial":
            counts[record.status] = counts.get(record.status, 0) + 1
    return counts
