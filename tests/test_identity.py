"""A cell's id is its experiment: execution switches, names and locations leave it alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from kdbench.cli import cli
from kdbench.engine.context import RunContext
from kdbench.engine.logit_store import StoreKey
from kdbench.engine.runner import plan
from kdbench.records.identity import experiment_id
from kdbench.records.schema import SCHEMA_VERSION, Record
from kdbench.records.store import RecordStore, read_record

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "fashion_mnist"
BENCHMARK = (REPO / "benchmarks" / "digits.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def context() -> RunContext:
    return RunContext()


def planned(tmp_path: Path, context: RunContext, text: str, name: str = "b.toml") -> list:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return plan(path, context).cells


def test_switches_and_the_benchmark_name_keep_cell_and_teacher_ids(tmp_path, context):
    switches = (
        "eval_batch_size = 7\neval_every = 3\ncompile = true\nchannels_last = true\n"
        'logit_cache = "off"\n'
    )
    fast = BENCHMARK.replace('name = "digits"', 'name = "digits_fast"')
    augment = "augment = { crop_padding = 1 }\n"
    fast = fast.replace(augment, augment + switches)
    assert fast.count(switches) == 2  # in [recipe] and in [teacher_recipe]
    before = planned(tmp_path, context, BENCHMARK)
    after = planned(tmp_path, context, fast, "fast.toml")
    assert [c.config()["recipe"]["compile"] for c in after] == [True] * len(after)
    assert [c.id for c in after] == [c.id for c in before]
    assert {c.teacher.id for c in after if c.teacher} == {c.teacher.id for c in before if c.teacher}


def test_recipe_numbers_change_cell_and_teacher_ids(tmp_path, context):
    before = planned(tmp_path, context, BENCHMARK)
    longer = BENCHMARK.replace("epochs = 30", "epochs = 31")
    after = planned(tmp_path, context, longer, "longer.toml")
    assert not {c.id for c in after} & {c.id for c in before}
    assert not {c.teacher.id for c in after if c.teacher} & {
        c.teacher.id for c in before if c.teacher
    }


def test_logit_cache_key_names_the_autocast_precision():
    keys = {
        StoreKey.of("t", "data", {"crop_padding": 1}, torch.device("cpu"), 0, amp).name
        for amp in (None, torch.bfloat16, torch.float16)
    }
    assert len(keys) == 3


def test_old_records_are_found_under_their_experiment_id(tmp_path):
    path = next((PUBLISHED / "records").glob("*.json"))
    raw = json.loads(path.read_text(encoding="utf-8"))
    record = read_record(path)
    assert isinstance(record, Record), str(record)
    assert raw["schema_version"] < SCHEMA_VERSION == record.schema_version
    assert record.cell_id == experiment_id(raw["config"]) != path.stem
    assert record.config.teacher.id != raw["config"]["teacher"]["id"]
    assert record.teacher["id"] == record.config.teacher.id  # the teacher section follows


def test_committed_run_is_complete_under_the_new_ids(tmp_path, context):
    out = tmp_path / "copy"
    shutil.copytree(PUBLISHED, out)
    cells = plan(out / "benchmark.toml", context).cells
    migrated, bad = RecordStore(out).scan()
    assert bad == []
    assert {c.id for c in cells} == set(migrated)  # 24 cells, 24 records

    result = CliRunner().invoke(cli, ["run", str(out / "benchmark.toml"), "--out", str(out),
                                      "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    states = [line.split()[-1] for line in result.output.splitlines()[2:] if line.strip()][:-1]
    assert states == ["done"] * 24


def test_rerun_of_an_old_record_replaces_its_file(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    old = next((PUBLISHED / "records").glob("*.json"))
    shutil.copy(old, records / old.name)
    store = RecordStore(tmp_path)
    record = read_record(records / old.name)
    assert store.is_done(record.cell_id)
    store.write(record.model_dump(mode="json", exclude_unset=True))
    assert sorted(p.name for p in records.iterdir()) == [f"{record.cell_id}.json"]
