"""File-system failures and Ctrl-C: one line and an exit code, nothing half written, and
a rerun that completes; outputs follow the umask; provenance leaves git untouched."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_resume_kill import finished, longer_benchmark, resume, start, wait_for_first_record

from kdbench.cli.app import INTERRUPTED, cli
from kdbench.core.errors import StorageError
from kdbench.engine.provenance import git_state
from kdbench.records.schema import dump
from kdbench.records.store import RecordStore, read_record, write_text_atomic

REPO = Path(__file__).resolve().parents[1]


def run(bench: Path, out: Path):
    return CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])


def last_word(output: str) -> str:
    """The one line kdbench ended with (after any progress it printed), no traceback."""
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    # Warnings (e.g. a busy machine's load average) may come before it.
    said = [line for line in lines if line.startswith("kdbench: ")]
    said = [line for line in said if not line.startswith("kdbench: warning:")]
    assert said == lines[-1:], output
    return said[0]


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    return last_word(result.output)


def assert_completes(bench: Path, out: Path) -> None:
    result = run(bench, out)
    assert result.exit_code == 0, result.output
    assert len(list((out / "records").glob("*.json"))) == 4
    assert list(out.rglob("*.tmp")) == []


def test_out_that_is_a_file_is_one_line_and_exit_2(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.write_text("not a folder", encoding="utf-8")
    line = one_line_error(run(tiny_benchmark, out))
    assert str(out) in line and "is a file" in line
    assert out.read_text(encoding="utf-8") == "not a folder"
    out.unlink()
    assert_completes(tiny_benchmark, out)


def test_out_below_a_file_is_one_line_and_exit_2(tiny_benchmark: Path, tmp_path: Path):
    # ENOTDIR: a folder that cannot be made whoever runs the test (root included).
    blocker = tmp_path / "blocker"
    blocker.write_text("", encoding="utf-8")
    line = one_line_error(run(tiny_benchmark, blocker / "out"))
    assert str(blocker / "out") in line and "Not a directory" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_one_line_and_exit_2_then_a_rerun_completes(tiny_benchmark, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        line = one_line_error(run(tiny_benchmark, out))
        assert str(out) in line and "Permission denied" in line
    finally:
        out.chmod(0o755)
    assert_completes(tiny_benchmark, out)


def test_disk_full_on_a_record_is_one_line_then_a_rerun_completes(
    tiny_benchmark: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Simulated: a really full disk needs a small mounted filesystem, which a test
    # cannot make without privileges. The rename is where a record becomes visible.
    out = tmp_path / "out"
    replace = os.replace

    def disk_full(src, dst, *args, **kwargs):
        if Path(dst).parent.name == "records":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", disk_full)
    line = one_line_error(run(tiny_benchmark, out))
    assert f"cannot write {out / 'records'}" in line and "No space left on device" in line
    assert list((out / "records").iterdir()) == []  # no record, no temporary
    monkeypatch.undo()
    assert_completes(tiny_benchmark, out)


def test_disk_full_while_writing_keeps_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Simulated as above; here the data itself fails to reach the disk.
    path = tmp_path / "leaderboard.md"
    path.write_text("old", encoding="utf-8")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageError, match=f"cannot write {path}: No space left on device"):
        write_text_atomic(path, "new")
    assert path.read_text(encoding="utf-8") == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_record_cut_off_mid_write_leaves_the_old_record_whole(tmp_path: Path):
    """The operating system refuses the write half-way (a file-size limit): the cell's
    earlier record is untouched and no temporary file is left behind."""
    source = next((REPO / "results" / "fashion_mnist" / "records").glob("*.json"))
    store = RecordStore(tmp_path)
    store.folder.mkdir()
    new = read_record(source)
    path = store.path(new.cell_id)
    old = source.read_bytes()  # an older schema: the new record differs from it
    path.write_bytes(old)
    assert len(old) > 2048
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
    try:
        with pytest.raises(StorageError, match="File too large"):
            store.write(dump(new))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert path.read_bytes() == old
    assert sorted(store.folder.iterdir()) == [path]


def test_any_os_error_about_a_file_is_one_line_and_exit_2(tmp_path: Path, monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/cifar/x.bin")

    monkeypatch.setattr("kdbench.engine.runner.plan", unreadable)
    line = one_line_error(CliRunner().invoke(cli, ["validate", str(tmp_path / "b.toml")]))
    assert line == "kdbench: error: cannot access /data/cifar/x.bin: Permission denied"


def test_an_os_error_about_no_file_keeps_its_traceback(tmp_path: Path, monkeypatch):
    def bug(*args, **kwargs):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr("kdbench.engine.runner.plan", bug)
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "b.toml")])
    assert isinstance(result.exception, OSError) and result.exit_code == 1


@pytest.fixture
def umask():
    """``os.umask``, with the process's own umask put back after the test."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def test_outputs_follow_the_umask(tiny_benchmark: Path, tmp_path: Path, umask):
    out = tmp_path / "out"
    umask(0o022)
    result = run(tiny_benchmark, out)
    assert result.exit_code == 0, result.output
    files = [p for p in out.rglob("*") if p.is_file()]
    # records, teacher weights and info, leaderboards, the benchmark copy and the lock
    assert {p.parent.name for p in files} >= {"out", "records", "teachers"}
    assert {p.suffix for p in files} >= {".json", ".pt", ".md", ".csv", ".toml"}
    modes = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert modes == dict.fromkeys(modes, "0o644")


def test_atomic_writes_follow_a_stricter_umask(tmp_path: Path, umask):
    umask(0o027)
    write_text_atomic(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=k@d", "-c", "user.name=kd", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_provenance_reads_git_without_touching_its_index(tiny_benchmark: Path, tmp_path: Path):
    repo = tiny_benchmark.parent
    git(repo, "init", "-q")
    git(repo, "add", tiny_benchmark.name)
    git(repo, "commit", "-qm", "benchmark")
    # Same content, new mtime: a plain `git status` would refresh and rewrite the index.
    later = tiny_benchmark.stat().st_mtime + 10
    os.utime(tiny_benchmark, (later, later))
    index = repo / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    out = tmp_path / "out"
    result = run(tiny_benchmark, out)
    assert result.exit_code == 0, result.output
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert git_state(str(repo)) == {"sha": git(repo, "rev-parse", "HEAD"), "dirty": False}


def proc_maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def interrupt(process: subprocess.Popen) -> str:
    """Ctrl-C; the line it answered with."""
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    return last_word(stderr)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_ctrl_c_while_starting_up_exits_130_with_one_line(tiny_benchmark: Path, tmp_path):
    out = tmp_path / "out"
    process = start(tiny_benchmark, out)
    # The command is up and importing torch (plugins and datasets come next). Before
    # kdbench's first line runs, Ctrl-C is the interpreter's own.
    deadline = time.monotonic() + 120
    while "libtorch" not in proc_maps(process.pid):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    assert interrupt(process) == INTERRUPTED
    assert list(out.glob("records/*.json")) == []


@pytest.mark.slow  # trains twelve epochs per cell, then resumes: over 10 s
def test_ctrl_c_while_training_exits_130_with_one_line_then_resumes(tmp_path: Path):
    bench = longer_benchmark(tmp_path)
    out = tmp_path / "out"
    process = start(bench, out)
    wait_for_first_record(process, out)
    assert interrupt(process) == INTERRUPTED
    done = finished(out)
    assert 1 <= len(done) < 4
    resume(bench, out, done)
