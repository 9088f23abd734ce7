"""Unusable record files: status and report warn and skip them, run quarantines and reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.records.schema import Record
from kdbench.records.store import QUARANTINE, RecordStore, read_record


def _non_utf8(text: str, other: str) -> bytes:
    return b"\xff\xfe" + text.encode()


def _truncated(text: str, other: str) -> bytes:
    return text[: len(text) // 2].encode()


def _without_metrics(text: str, other: str) -> bytes:
    data = json.loads(text)
    del data["metrics"]
    return json.dumps(data).encode()


def _other_version(text: str, other: str) -> bytes:
    return json.dumps({**json.loads(text), "schema_version": 99}).encode()


def _other_cell(text: str, other: str) -> bytes:
    return other.encode()  # a valid record of another cell, under this cell's name


CORRUPTIONS = {
    "non-utf8": (_non_utf8, "unreadable"),
    "truncated": (_truncated, "unreadable"),
    "list": (lambda text, other: b"[1, 2]", "unreadable"),
    "null": (lambda text, other: b"null", "unreadable"),
    "ok-without-metrics": (_without_metrics, "inconsistent"),
    "other-version": (_other_version, "foreign"),
    "other-cell": (_other_cell, "inconsistent"),
}


def corrupt(folder: Path) -> dict[str, str]:
    """Corrupt all but the last record of ``folder``, one kind each: file name -> kind."""
    files = sorted(folder.glob("*.json"))
    assert len(files) > len(CORRUPTIONS)
    kinds = {}
    # strict=False: more files than corruptions; the files left over stay intact.
    for (make, kind), path in zip(CORRUPTIONS.values(), files, strict=False):
        path.write_bytes(make(path.read_text(encoding="utf-8"), files[-1].read_text()))
        kinds[path.name] = kind
    return kinds


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_named_with_its_kind(tmp_path: Path, name: str):
    make, kind = CORRUPTIONS[name]
    source = Path(__file__).parent / "data" / "records" / "machine_a" / "records"
    first, other = sorted(source.glob("*.json"))[:2]
    path = tmp_path / first.name
    path.write_bytes(make(first.read_text(encoding="utf-8"), other.read_text(encoding="utf-8")))
    bad = read_record(path)
    assert not isinstance(bad, Record)
    assert bad.kind == kind and str(path) in str(bad)


@pytest.mark.slow
def test_run_quarantines_corrupt_records_and_reruns_exactly_their_cells(tmp_path: Path):
    bench = write_benchmark(tmp_path)
    bench.write_text(bench.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3]"))
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    folder = out / "records"
    kinds = corrupt(folder)
    intact = sorted(folder.glob("*.json"))[-1]
    intact_text = intact.read_text()

    state = runner.invoke(cli, ["status", str(out)])
    assert state.exit_code == 0, state.output
    assert f"unusable {len(kinds)} " in state.stdout and "quarantined" not in state.stdout
    assert "done     1\n" in state.stdout and f"pending  {len(kinds)}\n" in state.stdout
    report = runner.invoke(cli, ["report", str(out), "--format", "csv"])
    assert report.exit_code == 0, report.output
    for name, kind in kinds.items():
        assert f"{folder / name}: {kind} record" in report.stderr
    assert not (folder / QUARANTINE).exists()  # status and report only read

    again = runner.invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert again.exit_code == 0, again.output
    assert f"1 already done, {len(kinds)} to run" in again.stderr
    for name, kind in kinds.items():
        assert f"{folder / name}: {kind} record" in again.stderr
        reason = (folder / QUARANTINE / f"{name}.reason").read_text()
        assert reason.startswith(f"{kind}: ")
        assert (folder / QUARANTINE / name).is_file()
    assert intact.read_text() == intact_text  # a valid record is not run again
    valid, bad = RecordStore(out).scan()
    assert bad == [] and len(valid) == 8
    assert all(record.status == "ok" for record in valid.values())
    final = runner.invoke(cli, ["status", str(out)])
    assert "done     8\n" in final.stdout and "pending  0\n" in final.stdout
    assert f"quarantined {len(kinds)} " in final.stdout and "unusable" not in final.stdout
