"""One writer per results folder.

``kdbench run`` and ``kdbench teachers train`` hold ``<out>/.kdbench.lock`` while they
write there. It is an ``flock`` (through filelock), which the operating system releases
with the holder's last descriptor: a holder killed by SIGKILL, the OOM killer or a
crash leaves no lock behind, so no "stale lock" ever needs breaking by hand. Beside it,
``.kdbench.lock.json`` says who holds it (pid, host, start time, command); that note
only explains a refusal and is never what decides it - it may outlive a killed writer.

The holder also removes temporary files that dead writers left (their names carry the
writer's pid, see :func:`kdbench.records.store.atomic_path`); nobody else removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from kdbench.core.errors import KdbenchError, StorageError
from kdbench.records.store import temporary_maker, write_json_atomic

LOCK_NAME = ".kdbench.lock"
HOLDER_NAME = ".kdbench.lock.json"
# Where atomic writes put their temporaries: the folder itself, records/, teachers/, the
# kept students/, the teacher-logit store, and each group's folder under checkpoints/.
_TEMPORARY_FOLDERS = (".", "records", "teachers", "students", "logits")
_TEMPORARY_TREES = ("checkpoints",)


class FolderInUse(KdbenchError):
    """Another process writes this results folder now."""


@contextlib.contextmanager
def results_lock(
    out_dir: Path, *, wait: bool = False, notify: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold ``out_dir`` for this process: refuse at once (or ``wait``) if another holds it.

    ``notify`` is told once, with the holder named, when this process starts waiting.
    """
    out_dir = Path(out_dir)
    make_results_folder(out_dir)
    lock = FileLock(out_dir / LOCK_NAME)
    try:
        try:
            lock.acquire(blocking=False)
        except Timeout:
            in_use = f"results folder {out_dir} is in use by {describe_holder(out_dir)}"
            if not wait:
                raise FolderInUse(f"{in_use}; pass --wait to queue behind it") from None
            if notify:
                notify(f"{in_use}; waiting for it to finish")
            lock.acquire()
    except OSError as exc:
        raise StorageError(out_dir / LOCK_NAME, exc) from exc
    try:
        write_json_atomic(out_dir / HOLDER_NAME, _this_process())
        remove_dead_temporaries(out_dir)
        yield
    finally:
        with contextlib.suppress(OSError):
            (out_dir / HOLDER_NAME).unlink(missing_ok=True)
        lock.release()


def make_results_folder(out_dir: Path) -> None:
    """Create ``out_dir`` (and its parents), or say in one line why it cannot be."""
    if out_dir.exists() and not out_dir.is_dir():
        raise KdbenchError(f"results folder {out_dir} is a file, not a folder: pick another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(out_dir, exc, "create") from exc


def holder(out_dir: Path) -> dict[str, Any] | None:
    """What the holder wrote about itself, or None if it has not (yet) or it is unreadable."""
    try:
        info = json.loads((Path(out_dir) / HOLDER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def describe_holder(out_dir: Path) -> str:
    """Who holds the lock, in words; says so when the note names a pid gone from this host."""
    info = holder(out_dir)
    if info is None:
        return "another process (it has not said which)"
    text = f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        text += f" (this note may be stale: pid {pid} is not running here)"
    return text


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host (signal 0 probes it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_dead_temporaries(out_dir: Path) -> list[Path]:
    """Remove the temporary files whose writers are gone; call only while holding the lock.

    A temporary names its writer's pid; one whose writer still runs on this host (this
    process, or a ``kdbench report`` writing here) is left to it.
    """
    removed = []
    folders = [out_dir / name for name in _TEMPORARY_FOLDERS]
    for tree in _TEMPORARY_TREES:
        folders += [p for p in sorted((out_dir / tree).glob("**")) if p.is_dir()]
    for folder in folders:
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            maker = temporary_maker(tmp)
            if maker is not None and pid_alive(maker):
                continue
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _this_process() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["kdbench", *sys.argv[1:]]),
    }
