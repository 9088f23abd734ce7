"""The real CLI, end to end, on digits: records, tables, resume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from kdbench.cli import cli
from kdbench.records.schema import SCHEMA_VERSION


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def record_mtimes(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}


def test_run_writes_records_and_table_then_resumes(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    first = run_cli("run", str(tiny_benchmark), "--out", str(out), "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # ce and kd for one student, two seeds: four cells, one teacher.
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 4
    assert {r["status"] for r in records} == {"ok"}
    assert {r["config"]["loss"]["label"] for r in records} == {"ce", "kd"}
    for r in records:
        assert r["schema_version"] == SCHEMA_VERSION
        assert 0 <= r["metrics"]["top1"] <= 100
        assert r["provenance"]["torch"] and r["provenance"]["kdbench"]
        assert r["size"]["params"] > 0 and "latency" not in r
    # one student and one teacher architecture on one device: each measured once
    costs = {p.stem: json.loads(p.read_text()) for p in (out / "costs").glob("*.json")}
    (student,) = {r["arch_cost"]["student"]["key"] for r in records}
    (teacher,) = {r["arch_cost"]["teacher"]["key"] for r in records if r["config"]["teacher"]}
    assert set(costs) == {student, teacher}
    assert all(c["latency"]["batch1_p50_ms"] > 0 for c in costs.values())
    assert "| kd " in first.stdout and "| ce " in first.stdout
    assert (out / "leaderboard.md").is_file() and (out / "leaderboard.csv").is_file()
    assert len(list((out / "teachers").glob("*.pt"))) == 1

    before = record_mtimes(out)
    second = run_cli("run", str(tiny_benchmark), "--out", str(out), "--quiet", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "4 already done, 0 to run" in second.stderr
    assert record_mtimes(out) == before

    victim = sorted(before)[0]
    (out / "records" / victim).unlink()
    third = run_cli("run", str(tiny_benchmark), "--out", str(out), "--quiet", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    after = record_mtimes(out)
    assert set(after) == set(before)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {victim}


def test_dry_run_lists_cells_and_writes_nothing(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(tiny_benchmark), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "4 cells" in result.output
    assert result.output.count("pending") == 4
    assert not out.exists()


def test_failing_cell_is_recorded_and_the_matrix_goes_on(tmp_path: Path):
    from conftest import DIVERGING_PAIR, write_benchmark

    bench = write_benchmark(tmp_path, extra_pairs=DIVERGING_PAIR)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    failed = [r for r in records if r["status"] == "failed"]
    ok = [r for r in records if r["status"] == "ok"]
    assert len(records) == 8 and len(ok) == 4
    assert {r["config"]["student"]["name"] for r in failed} == {"cnn"}
    assert all(re.match(r"loss is (nan|inf) at epoch", r["error"]["message"]) for r in failed)
    table = (out / "leaderboard.md").read_text()
    assert "8 records (4 failed)" in table
    board = table.split("→ cnn(width=4)")[1].split("## ")[0]
    failed_rows = [line for line in board.splitlines() if line.rstrip().endswith("| failed   |")]
    assert len(failed_rows) == 2  # the ce and kd rows of the diverging pair, not dropped
    assert board.count("loss is") == 4  # each failed seed listed with its reason
