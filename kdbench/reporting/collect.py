"""Gather records from many results folders (several runs, several machines) as one set.

Records are keyed by the experiment they ran (:func:`kdbench.records.identity.experiment_id`),
not by the benchmark or folder that ran it: the same experiment found twice (the same
cell on two machines, or the same cells under two benchmark names) is one sample. One
copy is kept (a successful one over a failed one, then the latest, then the first
given), and the duplicate is reported with both paths, saying whether the two disagree.
Files no reader may use (see :func:`kdbench.records.store.read_record`) are skipped with a
warning; reading never moves them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.core.errors import KdbenchError
from kdbench.records.identity import experiment_id
from kdbench.records.schema import dump
from kdbench.records.store import BadRecord, read_record

COMPARED = (("metrics", "top1"), ("metrics", "top5"), ("status",))


@dataclass
class Collected:
    """Deduplicated records, where each came from, and what was noticed on the way."""

    records: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    experiments: dict[str, int] = field(default_factory=dict)  # experiment id -> index
    # tuning trials (scored on validation, never tested): only their studies' rows show them
    trials: list[dict[str, Any]] = field(default_factory=list)


def record_files(location: Path) -> list[Path]:
    """A results folder (with ``records/``), a ``records/`` folder, or one record file."""
    location = Path(location)
    if location.is_file():
        return [location]
    folder = location / "records" if (location / "records").is_dir() else location
    return sorted(folder.glob("*.json"))


def collect(locations: Iterable[Path], cells: set[str] | None = None) -> Collected:
    """Read every record under ``locations``, dropping duplicate experiments with a
    warning; with ``cells``, only the records of those cell ids count."""
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
            record = read_record(path)
            if isinstance(record, BadRecord):
                found.bad.append(record)
                found.warnings.append(f"{record}, skipped")
            elif record.config.phase == "trial":
                found.trials.append(dump(record))
            elif cells is None or record.cell_id in cells:
                _add(found, dump(record), path)
    return found


def _add(found: Collected, record: dict[str, Any], path: Path) -> None:
    experiment = experiment_id(record["config"])
    if experiment not in found.experiments:
        found.experiments[experiment] = len(found.records)
        found.paths[record["cell_id"]] = path
        found.records.append(record)
        return
    index = found.experiments[experiment]
    kept = found.records[index]
    kept_path = found.paths[kept["cell_id"]]
    if _preference(record) > _preference(kept):
        del found.paths[kept["cell_id"]]
        found.records[index], found.paths[record["cell_id"]] = record, path
        kept, kept_path, dropped, dropped_path = record, path, kept, kept_path
    else:
        dropped, dropped_path = record, path
    differences = _differences(kept, dropped)
    verdict = (
        "they differ: " + "; ".join(differences)
        if differences
        else "same status and metrics in both"
    )
    cells = kept["cell_id"]
    if dropped["cell_id"] != cells:
        cells += f" (also as cell {dropped['cell_id']}, {_benchmark(dropped)})"
    found.warnings.append(
        f"duplicate record for cell {cells} ({_label(kept)}): kept {kept_path}, "
        f"ignored {dropped_path}; {verdict}"
    )


def _benchmark(record: dict[str, Any]) -> str:
    return f"benchmark {record['config']['benchmark']!r}"


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
        skipped = f" ({len(found.bad)} unusable skipped, e.g. {found.bad[0]})" if found.bad else ""
        raise KdbenchError(f"no records found under {where}{skipped}")
    return found
