"""One typed record: the committed schema file, migration of version 1, the writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from kdbench.records.schema import SCHEMA_VERSION, Record, dump, json_schema, migrate
from kdbench.records.store import RecordStore, read_record
from kdbench.reporting.render_csv import leaderboard_csv
from kdbench.reporting.render_md import markdown
from kdbench.reporting.report import build_leaderboard

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted(
    [*REPO.glob("results/*/records/*.json"), *REPO.glob("tests/data/records/*/records/*.json")]
)


def test_committed_schema_file_equals_the_schema_of_the_code():
    committed = (REPO / "docs" / "record.schema.json").read_text(encoding="utf-8")
    regenerate = "python -m kdbench.records.schema > docs/record.schema.json"
    assert committed == json_schema(), f"the record model changed: {regenerate}"


VERSION_1 = [p for p in COMMITTED if json.loads(p.read_bytes())["schema_version"] == 1]


def test_committed_records_include_version_1_and_current_ones():
    versions = {json.loads(p.read_bytes())["schema_version"] for p in COMMITTED}
    assert versions == {1, SCHEMA_VERSION} and len(VERSION_1) >= 24


@pytest.mark.parametrize("path", VERSION_1, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_version_1_records_migrate_history_to_epoch_entries(path: Path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["schema_version"] == 1
    record = read_record(path)
    assert isinstance(record, Record), str(record)
    assert record.schema_version == SCHEMA_VERSION
    assert [e.epoch for e in record.history] == list(range(1, len(raw.get("history", [])) + 1))
    assert [e.train for e in record.history] == raw.get("history", [])
    assert all(e.lr is None and e.test_top1 is None for e in record.history)


def test_published_leaderboard_is_the_same_from_migrated_records(tmp_path: Path, monkeypatch):
    """Rewritten as version 2, the committed records give the committed leaderboard."""
    monkeypatch.chdir(tmp_path)  # the leaderboard names its folder as given
    folder = Path("results") / "fashion_mnist"
    shutil.copytree(REPO / folder, folder)
    store = RecordStore(folder)
    for path in sorted(store.folder.glob("*.json")):
        store.write(dump(read_record(path)))
    written = [json.loads(p.read_text()) for p in store.folder.glob("*.json")]
    assert len(written) == 24 and {r["schema_version"] for r in written} == {SCHEMA_VERSION}
    assert all(r["history"][0]["epoch"] == 1 for r in written)
    board = build_leaderboard([folder])
    assert board.warnings == []
    assert markdown(board) == (REPO / folder / "leaderboard.md").read_text(encoding="utf-8")
    assert leaderboard_csv(board) == (REPO / folder / "leaderboard.csv").read_text(encoding="utf-8")


def test_writer_refuses_a_record_the_readers_would_reject(tmp_path: Path):
    record = json.loads(COMMITTED[0].read_text(encoding="utf-8"))
    del record["metrics"]
    with pytest.raises(ValidationError, match="without metrics"):
        RecordStore(tmp_path).write(record | {"schema_version": SCHEMA_VERSION})
    assert not list(tmp_path.rglob("*.json"))


def test_writer_keeps_new_history_and_best_epoch_fields(tmp_path: Path):
    record = json.loads(COMMITTED[0].read_text(encoding="utf-8"))
    record["schema_version"] = SCHEMA_VERSION
    record["history"] = [{"epoch": 1, "lr": 0.1, "test_top1": 50.0, "train": {"total": 1.5}}]
    record["metrics"] |= {"best_top1": 50.0, "best_epoch": 1}
    path = RecordStore(tmp_path).write(record)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["history"] == record["history"]
    assert written["metrics"]["best_epoch"] == 1 and written["metrics"]["best_top1"] == 50.0
    bad = record | {"history": [{"epoch": 0, "train": {}}]}  # epochs count from 1
    with pytest.raises(ValidationError):
        RecordStore(tmp_path).write(bad)


# records written before provenance had ``benchmark_git`` (later ones are read as written
# by every other test of the committed records)
OLD_PROVENANCE = [
    p for p in COMMITTED
    if "benchmark_git" not in json.loads(p.read_bytes()).get("provenance", {"benchmark_git": 0})
]  # fmt: skip


def test_committed_records_of_the_old_provenance_shape_still_read_as_written():
    """Before benchmark_git, ``git`` named the benchmark's repository and each plugin its
    version alone: such records load, keep both as written and validate typed."""
    assert len(OLD_PROVENANCE) >= 24
    for path in OLD_PROVENANCE:
        raw = json.loads(path.read_text(encoding="utf-8"))["provenance"]
        record = read_record(path)
        assert isinstance(record, Record), f"{path}: {record}"
        assert record.provenance is not None and record.provenance.benchmark_git is None
        assert dump(record)["provenance"] == raw
        plugins = record.provenance.plugins or {}
        assert all(isinstance(v, str) for v in plugins.values()), path
        if raw.get("git"):
            assert record.provenance.git.sha == raw["git"]["sha"]


def test_provenance_fields_are_typed_where_readers_rely_on_them():
    record = migrate(json.loads(COMMITTED[-1].read_bytes()))
    record["provenance"] = {
        "git": {"sha": "a" * 40, "dirty": False},
        "benchmark_git": {"sha": None, "dirty": None},
        "plugins": {"losses_kd": {"distribution": "kdbench", "version": "0.2.0"}},
    }
    read = Record.model_validate(record).provenance
    assert read.git.sha == "a" * 40 and read.benchmark_git.sha is None
    assert read.plugins["losses_kd"].distribution == "kdbench"
    record["provenance"]["benchmark_git"] = {"sha": 3, "dirty": "yes"}
    with pytest.raises(ValidationError, match="benchmark_git"):
        Record.model_validate(record)
    record["provenance"]["benchmark_git"] = None
    record["provenance"]["plugins"] = {"losses_kd": {"version": "0.2.0"}}  # no distribution
    with pytest.raises(ValidationError, match="distribution"):
        Record.model_validate(record)
