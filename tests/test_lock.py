"""One writer per results folder: a second run refuses or waits; a killed holder's lock
and temporaries are taken over by the next run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner

from kdbench.cli.app import INTERRUPTED, cli
from kdbench.records.lock import HOLDER_NAME, describe_holder, holder, results_lock

# Holds the folder's lock with a record and a leaderboard half written (their temporaries
# exist) until its stdin closes, then gives up on both; prints the temporaries' paths.
HOLD = """
import contextlib, sys
from pathlib import Path
from kdbench.records.lock import results_lock
from kdbench.records.store import atomic_path

out = Path(sys.argv[1])
with results_lock(out), contextlib.ExitStack() as stack:
    temporaries = [stack.enter_context(atomic_path(out / name))
                   for name in ("records/0123456789ab.json", "leaderboard.md")]
    print(*temporaries, flush=True)
    sys.stdin.read()
    raise SystemExit(0)  # abandoned: the temporaries go, nothing is renamed into place
"""


@contextlib.contextmanager
def holding(out: Path) -> Iterator[tuple[subprocess.Popen, list[Path]]]:
    """A separate process holding ``out``; released (or already killed) on exit."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        temporaries = [Path(p) for p in process.stdout.readline().split()]
        assert temporaries, "the holder did not start"
        yield process, temporaries
    finally:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        process.wait(timeout=60)


def run(bench: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet", *extra])


def start_waiting(bench: Path, out: Path) -> subprocess.Popen:
    """``kdbench run --wait``; its first stderr line says whom it waits for."""
    return subprocess.Popen(
        [sys.executable, "-m", "kdbench", "run", str(bench), "--out", str(out), "--quiet",
         "--wait"],
        cwd=bench.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def records(out: Path) -> list[Path]:
    return sorted((out / "records").glob("*.json"))


def test_second_run_refuses_at_once_naming_the_holder(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    with holding(out) as (process, _):
        result = run(tiny_benchmark, out)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert f"pid {process.pid} on {socket.gethostname()} since " in lines[0]
        assert "--wait" in lines[0]
        assert "stale" not in lines[0]
        # Refused before training anything.
        assert records(out) == []
        assert not (out / "teachers").exists()


def test_second_process_leaves_the_holders_temporaries_alone(tiny_benchmark: Path, tmp_path):
    out = tmp_path / "out"
    with holding(out) as (_, temporaries):
        assert run(tiny_benchmark, out).exit_code == 2
        assert all(tmp.is_file() for tmp in temporaries)


def test_wait_queues_behind_the_holder_then_runs(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    with holding(out) as (holder_process, _):
        waiting = start_waiting(tiny_benchmark, out)
        notice = waiting.stderr.readline()
        assert f"in use by pid {holder_process.pid}" in notice and "waiting" in notice
        assert waiting.poll() is None
        assert records(out) == []
    # The holder has let go: the waiting run takes the folder and trains every cell.
    _, stderr = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, stderr
    assert len(records(out)) == 4


def test_teachers_train_refuses_a_folder_in_use(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    with holding(out) as (process, _):
        result = CliRunner().invoke(
            cli, ["teachers", "train", str(tiny_benchmark), "--out", str(out), "--quiet"]
        )
        assert result.exit_code == 2, result.output
        assert f"in use by pid {process.pid}" in result.output
        assert not (out / "teachers").exists()


def test_ctrl_c_while_waiting_exits_130(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    with holding(out):
        waiting = start_waiting(tiny_benchmark, out)
        assert "waiting" in waiting.stderr.readline()
        waiting.send_signal(signal.SIGINT)
        _, stderr = waiting.communicate(timeout=60)
        assert waiting.returncode == 130, stderr
        assert stderr.strip().splitlines() == [INTERRUPTED]
    assert records(out) == []


def test_sigkilled_holder_leaves_a_lock_the_next_run_takes(tiny_benchmark: Path, tmp_path):
    out = tmp_path / "out"
    with holding(out) as (process, temporaries):
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    # The dead holder's note and half-written files are still there...
    assert holder(out)["pid"] == process.pid
    assert f"pid {process.pid} is not running here" in describe_holder(out)
    assert all(tmp.is_file() for tmp in temporaries)
    # ...but the operating system released its lock: the next run proceeds and cleans up.
    result = run(tiny_benchmark, out)
    assert result.exit_code == 0, result.output
    assert len(records(out)) == 4
    assert not any(tmp.exists() for tmp in temporaries)
    assert list(out.rglob("*.tmp")) == []
    assert not (out / HOLDER_NAME).exists()  # a finished run leaves no note


def test_holder_note_names_this_process_while_held(tmp_path: Path):
    out = tmp_path / "out"
    with results_lock(out):
        note = json.loads((out / HOLDER_NAME).read_text(encoding="utf-8"))
        assert note["pid"] == os.getpid()
        assert note["host"] == socket.gethostname()
        assert note["started"][:2] == "20"
        assert describe_holder(out).startswith(f"pid {os.getpid()} on ")
        assert "stale" not in describe_holder(out)
    assert holder(out) is None


def test_next_holder_removes_dead_writers_temporaries_only(tmp_path: Path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, kept = [], []
    for folder in (out, out / "records", out / "teachers"):
        folder.mkdir(parents=True, exist_ok=True)
        stale.append(folder / f".a.json.{dead.pid}-0123abcd.tmp")  # its writer is gone
        stale.append(folder / ".b.json.k3x_9qz2.tmp")  # an older version's name: no pid
        kept.append(folder / f".c.json.{os.getpid()}-0123abcd.tmp")  # a live writer's
    for path in stale + kept:
        path.write_text("partial", encoding="utf-8")
    with results_lock(out):
        assert not any(path.exists() for path in stale)
        assert all(path.is_file() for path in kept)
