"""The ``jsonl`` tracker, always on: every run event as one JSON line in ``events.jsonl``.

A cell's finished event names its record rather than repeating it (records are on disk).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from kdbench import hookimpl
from kdbench.core.errors import ConfigError


class JsonLinesTracker:
    """Append each run event to ``<results>/events.jsonl`` (or ``path``), flushed at once."""

    def __init__(self, *, out_dir: Path, path: str | None = None) -> None:
        self.path = Path(path) if path else Path(out_dir) / "events.jsonl"
        # Checked now, opened at the first event: building it (as validate does) writes nothing.
        folder = next(p for p in (self.path.parent, *self.path.parent.parents) if p.exists())
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ConfigError(f"cannot write '{self.path}': '{folder}' is not a writable folder",
                              key="trackers.jsonl.path")  # fmt: skip
        self.file: TextIO | None = None

    @hookimpl
    def track_event(self, event) -> None:
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("a", encoding="utf-8")
        line = asdict(event)
        line.pop("record")
        line["time"] = datetime.now(UTC).isoformat()
        self.file.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@hookimpl
def register_trackers(register):
    register("jsonl", JsonLinesTracker)
