"""Which executor ran a results folder, so ``kdbench status`` can ask it for its jobs.

``kdbench run`` writes ``<out>/.kdbench.executor.json`` (atomically, before the first
cell starts): the executor's name, the parameters it was built with, where its class
lives and whether it describes the jobs it submits (a ``job_states`` static method).
``status`` reads it without the benchmark file, and without loading the plugins when
the class is one of kdbench's own: an executor that submits nothing costs no import.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdbench.core.errors import KdbenchError
from kdbench.records.store import write_json_atomic

NOTE_NAME = ".kdbench.executor.json"


@dataclass(frozen=True)
class ExecutorNote:
    """An executor as a run built it: ``cls`` is ``"module:qualname"``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    cls: str = ""
    describes_jobs: bool = False

    @classmethod
    def of(cls, name: str, params: dict[str, Any], executor_class: type) -> ExecutorNote:
        """The note for ``executor_class`` built as ``name`` with ``params``."""
        where = f"{executor_class.__module__}:{executor_class.__qualname__}"
        describes = callable(getattr(executor_class, "job_states", None))
        # TOML values JSON has no type for (dates) are kept as their text.
        plain = json.loads(json.dumps(params, default=str))
        return cls(name, plain, where, describes)


def write_executor_note(out_dir: Path, note: ExecutorNote) -> None:
    """Record which executor runs ``out_dir`` (replacing an earlier run's note)."""
    write_json_atomic(Path(out_dir) / NOTE_NAME, asdict(note))


def read_executor_note(out_dir: Path) -> ExecutorNote | None:
    """The note the last run left in ``out_dir``; None when no run of this version wrote one."""
    path = Path(out_dir) / NOTE_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ExecutorNote(
            name=str(data["name"]),
            params=dict(data.get("params") or {}),
            cls=str(data.get("cls", "")),
            describes_jobs=bool(data.get("describes_jobs", False)),
        )
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise KdbenchError(
            f"{path}: expected a JSON object with the executor's 'name' and 'params' "
            f"({type(exc).__name__}: {exc}); delete it and the next run writes it again"
        ) from None
