"""Gather records from many results folders (several runs, several machines) as one set.

A cell has the same id wherever it ran, so a record seen twice is the same cell run
twice: one copy is kept (a successful one over a failed one, then the latest), and the
duplicate is reported with both paths, saying whether the two disagree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError
from kdbench.records import SCHEMA_VERSION

COMPARED = (("metrics", "top1"), ("metrics", "top5"), ("status",))


@dataclass
class Collected:
    """Deduplicated records, where each came from, and what was noticed on the way."""

    records: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def record_files(location: Path) -> list[Path]:
    """A results folder (with ``records/``), a ``records/`` folder, or one record file."""
    location = Path(location)
    if location.is_file():
        return [location]
    folder = location / "records" if (location / "records").is_dir() else location
    return sorted(folder.glob("*.json"))


def collect(locations: Iterable[Path]) -> Collected:
    """Read every record under ``locations``, dropping duplicate cells with a warning."""
    found = Collected()
    seen: set[Path] = set()
    for location in locations:
        files = record_files(Path(location))
        if not files:
            found.warnings.append(f"{location}: no record files found")
        for path in files:
            resolved = path.resolve()
            if resolved in seen:  # the same file named twice is not a duplicate
                continue
            seen.add(resolved)
            record = _read(path, found.warnings)
            if record is not None:
                _add(found, record, path)
    return found


def _read(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        warnings.append(f"{path}: unreadable record skipped ({exc})")
        return None
    if not isinstance(record, dict) or "cell_id" not in record or "config" not in record:
        warnings.append(f"{path}: not a kdbench record, skipped")
        return None
    if record.get("schema_version") != SCHEMA_VERSION:
        warnings.append(
            f"{path}: schema version {record.get('schema_version')!r} is not "
            f"{SCHEMA_VERSION}, skipped"
        )
        return None
    return record


def _add(found: Collected, record: dict[str, Any], path: Path) -> None:
    cell = record["cell_id"]
    if cell not in found.paths:
        found.paths[cell] = path
        found.records.append(record)
        return
    index = next(i for i, r in enumerate(found.records) if r["cell_id"] == cell)
    kept, kept_path = found.records[index], found.paths[cell]
    if _preference(record) > _preference(kept):
        found.records[index], found.paths[cell] = record, path
        kept, kept_path, dropped, dropped_path = record, path, kept, kept_path
    else:
        dropped, dropped_path = record, path
    differences = _differences(kept, dropped)
    verdict = (
        "they differ: " + "; ".join(differences)
        if differences
        else "same status and metrics in both"
    )
    found.warnings.append(
        f"duplicate record for cell {cell} ({_label(kept)}): kept {kept_path}, "
        f"ignored {dropped_path}; {verdict}"
    )


def _preference(record: dict[str, Any]) -> tuple[bool, str]:
    """A successful record beats a failed one; then the one that finished last."""
    return record.get("status") == "ok", str(record.get("finished_at") or "")


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for keys in COMPARED:
        va, vb = _get(a, keys), _get(b, keys)
        if not _same(va, vb):
            out.append(f"{'.'.join(keys)} {_show(va)} (kept) vs {_show(vb)}")
    return out


def _get(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
    return a == b


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _label(record: dict[str, Any]) -> str:
    config = record["config"]
    teacher = (config.get("teacher") or {}).get("model", {}).get("name")
    student = config["student"]["name"]
    pair = f"{teacher}->{student}" if teacher else student
    return f"{config['dataset']['name']} {pair} {config['loss']['label']} seed {config['seed']}"


def collect_or_fail(locations: Iterable[Path]) -> Collected:
    """:func:`collect`, but having no record at all is a user error."""
    locations = list(locations)
    found = collect(locations)
    if not found.records:
        where = ", ".join(str(p) for p in locations)
        raise KdbenchError(f"no records found under {where}")
    return found
