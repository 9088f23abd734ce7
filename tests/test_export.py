"""``kdbench export`` stays inside its results folder and reads only sound records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import kdbench
from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.core.errors import KdbenchError
from kdbench.engine.context import RunContext
from kdbench.engine.runner import plan, run_benchmark


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, dict]:
    """A real results folder (one cell with its kept student) two levels below the root."""
    root = tmp_path_factory.mktemp("export")
    bench = write_benchmark(root)
    text = bench.read_text().replace("seeds = [0, 1]", "seeds = [0]")
    bench.write_text(text.replace("[losses.kd]\ntemperature = 4.0\n", ""))  # ce alone
    context = RunContext()
    out = root / "work" / "out"
    run_benchmark(plan(bench, context), context, out_dir=out, quiet=True)
    [record] = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["status"] == "ok" and record["student"]
    return out, record


def export(out: Path, cell: str, *args: str):
    return CliRunner().invoke(cli, ["export", str(out), cell, *args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def test_a_cell_given_as_a_path_out_of_the_folder_is_refused(results):
    out, record = results
    root = out.parent.parent
    # Everything `../../x` would have led to: a record, its student, an exports target.
    shutil.copy(out / "records" / f"{record['cell_id']}.json", out.parent / "x.json")
    (root / "students").mkdir(exist_ok=True)
    shutil.copy(out / record["student"]["file"], root / record["student"]["file"])
    output = one_line_error(export(out, "../../x"))
    assert "'../../x'" in output and "expected a cell id" in output
    assert not (out.parent / "x.pt").exists()
    output = one_line_error(export(out, str(out.parent / "x.json")))
    assert "is not in" in output and str(out / "records") in output


def test_a_cell_may_be_named_by_its_record_file_in_the_folder(results, tmp_path):
    out, record = results
    target = tmp_path / "student.pt"
    path = out / "records" / f"{record['cell_id']}.json"
    result = export(out, str(path), "--out", str(target))
    assert result.exit_code == 0, result.output
    assert target.stat().st_size > 0


def broken(record: dict, how: str) -> bytes:
    if how == "non-utf8":
        return b"\xff\xfe{" + json.dumps(record).encode("utf-16-le")
    if how == "json-list":
        return json.dumps([record]).encode()
    changed = json.loads(json.dumps(record))
    changed["cell_id"] = how
    if how == "no-sha256":
        del changed["student"]["sha256"]
    else:  # "student-outside": a hash-true copy of the student beside the folder
        changed["student"]["file"] = "../elsewhere.safetensors"
    return json.dumps(changed).encode()


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("no-sha256", "student.sha256: Field required"),
        ("non-utf8", "unreadable record"),
        ("json-list", "a JSON list, not an object"),
        ("student-outside", "is outside its results folder"),
    ],
)
def test_a_broken_record_is_one_line_from_export_and_load_student(results, how, expected):
    out, record = results
    shutil.copy(out / record["student"]["file"], out.parent / "elsewhere.safetensors")
    path = out / "records" / f"{how}.json"
    path.write_bytes(broken(record, how))
    try:
        output = one_line_error(export(out, how))
        assert expected in output and how in output
        assert not (out / "exports" / f"{how}.pt").exists()
        with pytest.raises(KdbenchError, match=expected):
            kdbench.load_student(path)
    finally:
        path.unlink()


def test_a_record_given_as_data_is_checked_the_same_way(results):
    out, record = results
    no_hash = json.loads(json.dumps(record))
    del no_hash["student"]["sha256"]
    with pytest.raises(KdbenchError, match="student entry lacks a file name or sha256"):
        kdbench.load_student(no_hash, results=out)
    with pytest.raises(KdbenchError, match="a list is not a record"):
        kdbench.load_student([record], results=out)
