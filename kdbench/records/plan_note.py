"""The cells a run planned, so ``kdbench status`` counts pending cells without planning.

Planning a benchmark file loads every plugin, and with them torch: seconds before
``status`` could answer. ``kdbench run`` therefore writes ``<out>/.kdbench.plan.json``
beside the ``benchmark.toml`` it copies: each planned cell's id and label, and the
sha256 of that file. ``status`` uses the note while the folder's ``benchmark.toml`` is
unchanged, and plans from the file otherwise. The note holds the cells as the run
planned them, so they include what the command line changed (``--devices``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kdbench.records.store import write_json_atomic

NOTE_NAME = ".kdbench.plan.json"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_plan_note(out_dir: Path, benchmark_text: str, cells: dict[str, str]) -> None:
    """Note the planned cells (id -> label) of the run of ``benchmark_text`` in ``out_dir``."""
    note = {"benchmark_sha256": text_sha256(benchmark_text), "cells": cells}
    write_json_atomic(Path(out_dir) / NOTE_NAME, note)


def read_plan_note(out_dir: Path, benchmark: Path) -> dict[str, str] | None:
    """The noted cells (id -> label) if they were planned from ``benchmark`` as it is now.

    None when there is no note, when it cannot be read (status then plans, and the next
    run writes it again) or when the benchmark file changed since.
    """
    path = Path(out_dir) / NOTE_NAME
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
        current = text_sha256(Path(benchmark).read_text(encoding="utf-8"))
        if not isinstance(note, dict) or note.get("benchmark_sha256") != current:
            return None
        cells = note["cells"]
        if not isinstance(cells, dict):
            return None
        return {str(cell_id): str(label) for cell_id, label in cells.items()}
    except (OSError, ValueError, KeyError):
        return None
