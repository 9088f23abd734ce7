"""Records on disk: one JSON file per cell, written atomically, read back for reports.

A record is complete when its file exists; it is written with a temporary file and a
rename, so a crash or Ctrl-C never leaves half a record. Records are the only source
of truth for every table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kdbench.errors import StorageError

SCHEMA_VERSION = 1
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


class RecordStore:
    """The ``records/`` folder of a results directory."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.folder = self.out_dir / "records"

    def path(self, cell_id: str) -> Path:
        return self.folder / f"{cell_id}.json"

    def is_done(self, cell_id: str) -> bool:
        """True when the cell has a successful record (failed cells are run again)."""
        path = self.path(cell_id)
        if not path.is_file():
            return False
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("status") == "ok"
        except (OSError, json.JSONDecodeError):
            return False

    def write(self, record: dict[str, Any]) -> Path:
        path = self.path(record["cell_id"])
        write_json_atomic(path, record)
        return path
