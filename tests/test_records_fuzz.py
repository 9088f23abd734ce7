"""Generated record folders: status, report and the resume check never crash, and every
file no reader may use is named, skipped and (by the store) quarantined."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdbench.cli import cli
from kdbench.engine.matrix import stable_hash
from kdbench.records.schema import Record, dump
from kdbench.records.store import BadRecord, RecordStore, read_record

TEMPLATE = dump(
    read_record(
        Path(__file__).parent / "data" / "records" / "machine_a" / "records" / "0339300e71f1.json"
    )
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record the writer accepts: ok with metrics or failed with an error."""
    record = json.loads(json.dumps(TEMPLATE))
    config = record["config"]
    config["seed"] = draw(st.integers(0, 3))
    config["loss"]["label"] = draw(st.sampled_from(["ce", "kd", "dkd"]))
    config["benchmark"] = draw(st.sampled_from(["a", "b"]))
    if draw(st.booleans()):
        record["metrics"]["top1"] = draw(st.floats(0, 100))
    else:
        record = {k: v for k, v in record.items() if k != "metrics"}
        record |= {"status": "failed", "error": {"type": "E", "message": draw(st.text())}}
    record["cell_id"] = stable_hash(config)
    return Record.model_validate(record).model_dump(mode="json", exclude_unset=True)


def _text(record: dict[str, Any]) -> str:
    return json.dumps(record)


@st.composite
def broken_files(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """A file name, its contents, and whether no reader may use it whatever was drawn."""
    record = draw(valid_records())
    name = record["cell_id"]
    kind = draw(st.sampled_from(["truncated", "wrong-type", "bytes", "list", "null", "missing"]))
    if kind == "truncated":
        text = _text(record)
        return name, text[: draw(st.integers(0, len(text) - 1))].encode(), True
    if kind == "wrong-type":
        key = draw(st.sampled_from(["status", "config", "cell_id", "metrics", "history"]))
        value = draw(JSON.filter(lambda v: not isinstance(v, dict | list)))
        # a failed record has no metrics: null there is still a valid record
        return name, _text(record | {key: value}).encode(), not (key == "metrics" and value is None)
    if kind == "missing":
        key = draw(st.sampled_from(["schema_version", "cell_id", "config", "status"]))
        return name, _text({k: v for k, v in record.items() if k != key}).encode(), True
    if kind == "list":
        return name, json.dumps(draw(st.lists(JSON, max_size=3))).encode(), True
    if kind == "null":
        return name, b"null", True
    name = draw(st.text("0123456789abcdef", min_size=1, max_size=12))
    return name, draw(st.binary(max_size=40)), True


@pytest.mark.slow  # 50 generated folders, each through status, report and the store
@settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    good=st.lists(valid_records(), max_size=4, unique_by=lambda r: r["cell_id"]),
    broken=st.lists(broken_files(), max_size=4, unique_by=lambda f: f[0]),
)
def test_readers_never_crash_and_skip_exactly_the_unusable_files(good, broken):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        folder = out / "records"
        folder.mkdir()
        for record in good:
            (folder / f"{record['cell_id']}.json").write_text(json.dumps(record))
        names = {record["cell_id"] for record in good}
        broken = [(name, data, sure) for name, data, sure in broken if name not in names]
        for name, data, _ in broken:
            (folder / f"{name}.json").write_bytes(data)
        read = {path.name: read_record(path) for path in folder.glob("*.json")}
        unusable = {name for name, record in read.items() if isinstance(record, BadRecord)}
        assert {f"{name}.json" for name, _, sure in broken if sure} <= unusable
        assert not {f"{name}.json" for name in names} & unusable

        runner = CliRunner()
        state = runner.invoke(cli, ["status", str(out)])
        assert state.exit_code == 0, state.output
        assert (f"unusable {len(unusable)} " in state.stdout) == bool(unusable)
        report = runner.invoke(cli, ["report", str(out), "--format", "csv", "--no-reference"])
        assert report.exit_code == (0 if len(read) > len(unusable) else 2), report.output
        if report.exit_code == 2:  # nothing usable: one line says so, naming a bad file
            assert f"no records found under {out}" in report.stderr
            assert (f"({len(unusable)} unusable skipped" in report.stderr) == bool(unusable)
        else:
            assert all(f"{folder / name}: " in report.stderr for name in unusable)

        store = RecordStore(out)
        for name, record in read.items():
            done = isinstance(record, Record) and record.status == "ok"
            assert store.is_done(Path(name).stem) is done
        assert {bad.path.name for bad in store.quarantine()} == unusable
        assert store.scan()[1] == [] and len(store.quarantined()) == len(unusable)
        again = runner.invoke(cli, ["status", str(out)])
        assert (f"quarantined {len(unusable)} " in again.stdout) == bool(unusable)
        assert {p.name for p in folder.glob("*.json")} == set(read) - unusable
