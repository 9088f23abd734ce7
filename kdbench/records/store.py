"""Records on disk: one JSON file per cell, written atomically, read back for reports.

A record is complete when its file exists; it is written with a temporary file and a
rename, so a crash or Ctrl-C never leaves half a record. Records are the only source
of truth for every table.

Every reader (resume, ``status``, ``report``, ``collect``) reads a file with
:func:`read_record`, which parses it through :class:`~kdbench.records.schema.Record`
or says why it cannot: unreadable (bad bytes, bad JSON, not a JSON object), foreign
(a schema version that cannot be migrated) or inconsistent (stored under another
cell's name, ``ok`` without metrics, failing validation). Such a file is moved to
``records/.quarantine/`` with a ``.reason`` file beside it only by ``kdbench run``,
the one command that writes the folder (:meth:`RecordStore.quarantine`); ``status``
and ``report`` only read, so they warn, count and skip it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kdbench.core.errors import StorageError
from kdbench.records.schema import MIGRATABLE, SCHEMA_VERSION, Record, dump, migrate

__all__ = ["SCHEMA_VERSION", "BadRecord", "RecordStore", "read_record"]
QUARANTINE = ".quarantine"
# ".<final name>.<pid of the writer>-<random>.tmp": the pid says whose it is.
_TEMPORARY = re.compile(r"\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it only if the block succeeds.

    Readers see the old file or the whole new one, never a half-written file. The file
    is created with mode ``0o666 & ~umask``, like any other file the user makes, and its
    name carries this process's pid, so only its maker (or a lock holder, once the
    maker is dead) removes it. An OS error becomes a :class:`StorageError` naming ``path``.
    """
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def temporary_maker(path: Path) -> int | None:
    """The pid that made a temporary file, or None for a name this version did not make."""
    match = _TEMPORARY.search(path.name)
    return int(match["pid"]) if match else None


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


@dataclass(frozen=True)
class BadRecord:
    """A record file no reader may use, and why (``kind``: unreadable, foreign,
    inconsistent)."""

    path: Path
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind} record ({self.reason})"


def read_record(path: Path) -> Record | BadRecord:
    """The record in ``path``, migrated to the current schema, or why it is unusable."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return BadRecord(path, "unreadable", _one_line(exc))
    if not isinstance(data, dict):
        return BadRecord(path, "unreadable", f"a JSON {type(data).__name__}, not an object")
    version = data.get("schema_version")
    if type(version) is not int or version not in MIGRATABLE:  # not 1.0, not true
        return BadRecord(
            path, "foreign", f"schema_version {version!r}, expected one of {sorted(MIGRATABLE)}"
        )
    stored = data.get("cell_id")  # the name it was written under, before any migration
    try:
        record = Record.model_validate(migrate(data))
    except ValidationError as exc:
        return BadRecord(path, "inconsistent", _first_error(exc))
    if stored != path.stem:
        return BadRecord(path, "inconsistent", f"cell_id {stored!r} in a file named {path.name}")
    return record


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "record"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return _one_line(f"{where}: {error['msg']}{more}")


def _one_line(message: object) -> str:
    return " ".join(str(message).split())[:200]


class RecordStore:
    """The ``records/`` folder of a results directory."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.folder = self.out_dir / "records"
        self.quarantine_folder = self.folder / QUARANTINE
        self._renamed: dict[str, Path] | None = None

    def path(self, cell_id: str) -> Path:
        return self.folder / f"{cell_id}.json"

    def record(self, cell_id: str) -> Record | None:
        """The cell's valid record, whatever its status; None if it has none."""
        path = self.path(cell_id)
        if not path.is_file():
            path = self._migrated().get(cell_id)
            if path is None:
                return None
        record = read_record(path)
        return record if isinstance(record, Record) else None

    def is_done(self, cell_id: str) -> bool:
        """True when the cell has a valid, successful record (others are run again)."""
        record = self.record(cell_id)
        return record is not None and record.status == "ok"

    def _migrated(self) -> dict[str, Path]:
        """Files of older schemas by the id migration gave them (their names keep the old id)."""
        if self._renamed is None:
            self._renamed = {}
            for path in sorted(self.folder.glob("*.json")):
                record = read_record(path)
                if isinstance(record, Record) and record.cell_id != path.stem:
                    self._renamed[record.cell_id] = path
        return self._renamed

    def scan(self) -> tuple[dict[str, Record], list[BadRecord]]:
        """Every record of this folder by cell id, and the files no reader may use."""
        good, bad = {}, []
        for path in sorted(self.folder.glob("*.json")):
            record = read_record(path)
            if isinstance(record, BadRecord):
                bad.append(record)
            else:
                good[record.cell_id] = record
        return good, bad

    def quarantined(self) -> list[BadRecord]:
        """Files earlier runs moved to ``records/.quarantine/``, with their reasons."""
        out = []
        for path in sorted(self.quarantine_folder.glob("*.json")):
            note = path.with_name(path.name + ".reason")
            text = note.read_text(encoding="utf-8").strip() if note.is_file() else ""
            kind, _, reason = text.partition(": ")
            out.append(BadRecord(path, kind or "quarantined", reason or "no reason kept"))
        return out

    def quarantine(self) -> list[BadRecord]:
        """Move every unusable record file to ``.quarantine/``, its reason beside it.

        Only ``kdbench run`` calls this: the cells are then not done and run again.
        """
        _, bad = self.scan()
        for item in bad:
            self.quarantine_folder.mkdir(parents=True, exist_ok=True)
            target = self.quarantine_folder / item.path.name
            n = 0
            while target.exists():  # keep what an earlier run moved there
                n += 1
                target = self.quarantine_folder / f"{item.path.stem}.{n}.json"
            os.replace(item.path, target)
            target.with_name(target.name + ".reason").write_text(
                f"{item.kind}: {item.reason}\n", encoding="utf-8"
            )
        return bad

    def write(self, record: dict[str, Any]) -> Path:
        """Validate ``record`` against the schema and write it as ``<cell_id>.json``."""
        data = dump(Record.model_validate(record))
        path = self.path(data["cell_id"])
        write_json_atomic(path, data)
        old = self._migrated().pop(data["cell_id"], None)
        if old is not None:  # a rerun replaces the cell's record of an older schema
            old.unlink(missing_ok=True)
        return path
