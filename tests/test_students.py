"""Trained students are kept per cell, reload to their recorded accuracy and export."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import kdbench
from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.core.errors import KdbenchError
from kdbench.core.plugins import load_plugins
from kdbench.engine.context import RunContext
from kdbench.engine.evaluate import evaluate
from kdbench.engine.matrix import DatasetSpec, file_sha256
from kdbench.engine.runner import plan, run_benchmark
from kdbench.engine.students import build_student, read_student, save_student
from kdbench.records.store import RecordStore, read_record

HAS_ONNX = importlib.util.find_spec("onnx") is not None
REFERENCE = Path(__file__).parents[1] / "results" / "reference"
REFERENCE_KEYS = REFERENCE / "repdistiller_state_dict_keys.json"


def run(folder: Path, extra: str = "") -> tuple[Path, list[dict]]:
    bench = write_benchmark(folder)
    bench.write_text(bench.read_text().replace("seeds = [0, 1]", "seeds = [0]") + extra)
    context = RunContext()
    out = folder / "out"
    run_benchmark(plan(bench, context), context, out_dir=out, quiet=True)
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    return out, records


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, list[dict]]:
    return run(tmp_path_factory.mktemp("students"))


def test_every_cell_keeps_its_student_with_the_files_hash(finished):
    out, records = finished
    assert len(records) == 2
    for record in records:
        path = out / record["student"]["file"]
        assert path == out / "students" / f"{record['cell_id']}.safetensors"
        assert file_sha256(path) == record["student"]["sha256"]
        assert path.stat().st_size == record["student"]["bytes"]
        assert read_record(out / "records" / f"{record['cell_id']}.json").student is not None


@pytest.mark.parametrize("how", ["record file", "record", "weights file"])
def test_loaded_student_gives_the_recorded_test_accuracy(finished, how):
    out, records = finished
    data, _ = RunContext().dataset(DatasetSpec("digits", {}))
    for record in records:
        source = {
            "record file": out / "records" / f"{record['cell_id']}.json",
            "record": record,
            "weights file": out / record["student"]["file"],
        }[how]
        model = kdbench.load_student(source, results=out if how == "record" else None)
        accuracy = evaluate(model, data.test, mean=torch.tensor(data.mean),
                            std=torch.tensor(data.std), device=torch.device("cpu"))  # fmt: skip
        assert accuracy["top1"] == record["metrics"]["top1"]
        assert accuracy["top5"] == record["metrics"]["top5"]


def test_student_file_that_does_not_match_its_record_is_refused(finished, tmp_path):
    out, records = finished
    record = dict(records[0])
    copy = tmp_path / record["student"]["file"]
    copy.parent.mkdir(parents=True)
    copy.write_bytes((out / record["student"]["file"]).read_bytes()[:-1] + b" ")
    with pytest.raises(KdbenchError, match="does not match its record's sha256"):
        kdbench.load_student(record, results=tmp_path)


def test_record_without_student_says_how_to_keep_them(tmp_path):
    out, records = run(tmp_path, "\n[run]\nkeep_students = false\n")
    assert all("student" not in record for record in records)
    assert not (out / "students").exists()
    with pytest.raises(KdbenchError, match="keep_students = true"):
        kdbench.load_student(out / "records" / f"{records[0]['cell_id']}.json")


def test_zoo_student_is_saved_in_the_reference_state_dict_layout(tmp_path):
    plugins = load_plugins()
    model = plugins.registry.get("students", "resnet8x4").obj(num_classes=100, in_channels=3)
    meta = {"model": "resnet8x4", "params": {}, "num_classes": 100, "in_channels": 3,
            "image_size": [32, 32]}  # fmt: skip
    save_student(model, tmp_path, "cell", meta)
    student = read_student(tmp_path / "students" / "cell.safetensors")
    reference = json.loads(REFERENCE_KEYS.read_text())["resnet8x4"]
    assert {key: list(t.shape) for key, t in student.state.items()} == dict(reference)
    reloaded = build_student(student, plugins)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(reloaded(x), model(x))


def export(out: Path, cell: str, *args: str):
    return CliRunner().invoke(cli, ["export", str(out), cell, *args])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_export_gives_the_students_logits(finished, tmp_path):
    out, records = finished
    cell = records[0]["cell_id"]
    target = tmp_path / "student.pt"
    result = export(out, cell, "--format", "torchscript", "--out", str(target))
    assert result.exit_code == 0, result.output
    exported = torch.jit.load(str(target))
    model = kdbench.load_student(out / "records" / f"{cell}.json")
    x = torch.randn(5, 1, 8, 8)  # another batch size than the trace's
    torch.testing.assert_close(exported(x), model(x))


@pytest.mark.skipif(not HAS_ONNX, reason="the onnx package is not installed")
def test_onnx_export_gives_the_students_logits(finished, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    out, records = finished
    cell = records[0]["cell_id"]
    target = tmp_path / "student.onnx"
    result = export(out, cell, "--format", "onnx", "--out", str(target))
    assert result.exit_code == 0, result.output
    x = torch.randn(5, 1, 8, 8)
    session = onnxruntime.InferenceSession(str(target))
    logits = session.run(None, {"images": x.numpy()})[0]
    model = kdbench.load_student(out / "records" / f"{cell}.json")
    torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=1e-4, atol=1e-5)


def test_onnx_export_without_the_package_says_what_to_install(finished, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    out, records = finished
    result = export(out, records[0]["cell_id"], "--format", "onnx")
    assert result.exit_code == 2
    assert "needs the onnx package: pip install onnx" in result.output
    assert not (out / "exports").exists() or not list((out / "exports").glob("*.onnx"))


def test_export_of_an_unknown_cell_is_one_line_naming_it(finished):
    out, _ = finished
    result = export(out, "nosuchcell")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "nosuchcell" in result.output


def test_records_store_accepts_records_with_and_without_student(finished, tmp_path):
    _, records = finished
    store = RecordStore(tmp_path)
    for record in records:
        store.write(record)
        old = {k: v for k, v in record.items() if k != "student"}
        old["cell_id"] = record["cell_id"] + "x"
        store.write(old)
    assert len(store.scan()[0]) == 2 * len(records)
