"""Reports count each experiment once, and pool configurations only when asked."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from kdbench.cli import cli
from kdbench.engine.matrix import stable_hash
from kdbench.records.identity import configuration_id, experiment_id
from kdbench.records.schema import SCHEMA_VERSION

PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "fashion_mnist"


def renamed_copy(folder: Path, benchmark: str, **loss_params: dict) -> Path:
    """The published records as another benchmark would write them: the name in each
    config, the cell id the kdbench that wrote the record gives it (before schema 3, the
    whole config's hash; since, the experiment's) and file name; ``loss_params`` by label."""
    out = folder / benchmark
    (out / "records").mkdir(parents=True)
    for path in sorted((PUBLISHED / "records").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        config = record["config"]
        config["benchmark"] = benchmark
        config["loss"]["params"].update(loss_params.get(config["loss"]["label"], {}))
        current = record.get("schema_version") == SCHEMA_VERSION
        record["cell_id"] = experiment_id(config) if current else stable_hash(config)
        (out / "records" / f"{record['cell_id']}.json").write_text(json.dumps(record))
    return out


def rows(*args: str) -> tuple[list[dict[str, str]], str]:
    result = CliRunner().invoke(cli, ["report", *args, "--format", "csv", "--no-reference"])
    assert result.exit_code == 0, result.output
    table = [r for r in csv.DictReader(io.StringIO(result.stdout)) if r["kind"] == "measured"]
    return table, result.stderr


def test_identity_ignores_benchmark_name_and_execution_switches():
    config = json.loads(next((PUBLISHED / "records").glob("*.json")).read_text())["config"]
    moved = {
        **config,
        "benchmark": "other",
        "recipe": {**config["recipe"], "compile": True, "eval_batch_size": 7},
        "dataset": {**config["dataset"], "params": {**config["dataset"]["params"], "root": "/x"}},
    }
    assert experiment_id(moved) == experiment_id(config)
    assert experiment_id({**config, "seed": 9}) != experiment_id(config)
    assert configuration_id({**config, "seed": 9}) == configuration_id(config)
    recipe = {**config["recipe"], "epochs": 11}
    assert experiment_id({**config, "recipe": recipe}) != experiment_id(config)
    loss = {**config["loss"], "params": {"temperature": 2.0}}
    assert configuration_id({**config, "loss": loss}) != configuration_id(config)


def test_same_cells_under_two_benchmark_names_are_reported_once(tmp_path: Path):
    copy = renamed_copy(tmp_path, "fashion_mnist_again")
    alone, _ = rows(str(PUBLISHED))
    both, stderr = rows(str(PUBLISHED), str(copy))
    assert both == alone  # n, mean and CI unchanged: each experiment is one sample
    assert {r["n"] for r in both} == {"3"}
    assert stderr.count("duplicate record for cell") == 24
    # Migration gives both copies the same experiment id: no "(also as cell ...)".
    assert "also as cell" not in stderr
    assert stderr.count(str(copy / "records")) == 24


def test_two_configurations_of_a_method_are_two_rows_unless_pooled(tmp_path: Path):
    copy = renamed_copy(tmp_path, "fashion_mnist_t2", kd={"temperature": 2.0})
    split, _ = rows(str(PUBLISHED), str(copy))
    kd = [r for r in split if r["method"].startswith("kd [")]
    assert len(kd) == 2 and [r["n"] for r in kd] == ["3", "3"]
    assert kd[0]["method"] != kd[1]["method"]
    assert len(split) == 9  # eight methods, kd twice

    pooled, stderr = rows(str(PUBLISHED), str(copy), "--pool")
    (kd,) = [r for r in pooled if r["method"] == "kd"]
    assert kd["n"] == "6" and len(pooled) == 8
    assert "2 configurations pooled into one row" in stderr
