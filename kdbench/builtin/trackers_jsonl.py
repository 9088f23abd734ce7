"""The ``jsonl`` tracker, always on: every run event as one JSON line in ``events.jsonl``.

A cell's finished event names its record rather than repeating it (records are on disk).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from kdbench import hookimpl


class JsonLinesTracker:
    """Append each run event to ``<results>/events.jsonl`` (or ``path``), flushed at once."""

    def __init__(self, *, out_dir: Path, path: str | None = None) -> None:
        self.path = Path(path) if path else Path(out_dir) / "events.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a", encoding="utf-8")

    @hookimpl
    def track_event(self, event) -> None:
        line = asdict(event)
        line.pop("record")
        line["time"] = datetime.now(UTC).isoformat()
        self.file.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


@hookimpl
def register_trackers(register):
    register("jsonl", JsonLinesTracker)
