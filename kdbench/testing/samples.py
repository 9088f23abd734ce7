"""Real results for the kit: a small results folder shipped with kdbench.

Eight records of the digits benchmark (``results/digits_cpu``): ``ce`` and ``kd``,
seeds 0 and 1, students ``cnn(width=8)`` and ``mlp(hidden=32)`` under the teacher
``cnn(width=16)``, as ``kdbench run`` wrote them. Formats, commands and trackers are
checked on these rather than on made-up numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parent / "data" / "digits"


def sample_results() -> Path:
    """The shipped results folder (``records/*.json``); copy it before writing into it."""
    return SAMPLE


def sample_record(loss: str = "kd", seed: int = 0, student: str = "cnn") -> dict[str, Any]:
    """One shipped record as JSON data: the one of ``loss``, ``seed`` and ``student``."""
    for path in sorted((SAMPLE / "records").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        config = record["config"]
        if (config["loss"]["label"], config["seed"], config["student"]["name"]) == (
            loss,
            seed,
            student,
        ):
            return record
    raise LookupError(f"no sample record of loss {loss!r}, seed {seed}, student {student!r}")
