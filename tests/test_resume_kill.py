"""A run killed midway (SIGKILL, or Ctrl-C with workers busy) resumes to one record per cell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, write_benchmark

CELLS = 4  # ce and kd, two seeds


def start(bench: Path, out: Path) -> subprocess.Popen:
    # A session of its own: Ctrl-C in a terminal signals the whole process group.
    return subprocess.Popen(
        [sys.executable, "-m", "kdbench", "run", str(bench), "--out", str(out), "--quiet"],
        cwd=bench.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_first_record(process: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not list((out / "records").glob("*.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no record appeared"
        time.sleep(0.1)


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (Linux /proc), zombies excluded."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def check_complete(out: Path) -> dict[str, dict]:
    """One valid, ok record per cell and no temporary file left behind."""
    files = sorted((out / "records").iterdir())
    assert [p for p in files if p.suffix != ".json"] == []
    records = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in files}
    assert len(records) == CELLS
    assert all(r["status"] == "ok" and r["cell_id"] == cell for cell, r in records.items())
    return records


def resume(bench: Path, out: Path, done_before: dict[str, int]) -> None:
    """Run again; cells that had a record keep it untouched, the others run once."""
    again = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(bench), "--out", str(out), "--quiet"],
        cwd=bench.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert f"{len(done_before)} already done, {CELLS - len(done_before)} to run" in again.stderr
    check_complete(out)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert {name: after[name] for name in done_before} == done_before


def longer_benchmark(folder: Path) -> Path:
    """Longer cells than the tiny default, so a kill lands while cells remain."""
    return write_benchmark(folder, text=TINY.format(extra_pairs="").replace(
        "[recipe]\nepochs = 2", "[recipe]\nepochs = 12"))  # fmt: skip


def finished(out: Path) -> dict[str, int]:
    """Each record file's mtime: which cells a resumed run must leave alone."""
    return {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}


def test_sigkill_midway_then_resume_runs_every_cell_once(tmp_path: Path):
    tiny_benchmark = longer_benchmark(tmp_path)
    out = tmp_path / "out"
    process = start(tiny_benchmark, out)
    wait_for_first_record(process, out)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    done = finished(out)
    assert 1 <= len(done) < CELLS
    resume(tiny_benchmark, out, done)


@pytest.mark.slow
def test_ctrl_c_stops_pool_workers_exits_130_and_resumes(tmp_path: Path):
    text = TINY.format(extra_pairs="") + '\n[executor]\nname = "pool"\nparams = { workers = 2 }\n'
    bench = write_benchmark(tmp_path, text=text)
    out = tmp_path / "out"
    process = start(bench, out)
    wait_for_first_record(process, out)
    assert len(group_members(process.pid)) >= 3  # kdbench and its two workers
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    deadline = time.monotonic() + 15
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(process.pid) == []  # no worker outlives the run
    done = finished(out)
    assert 1 <= len(done) < CELLS
    resume(bench, out, done)
