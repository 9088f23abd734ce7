"""``eval_batch_size``: "auto" picks the device's fast size, and no size changes a result."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from pydantic import ValidationError

from conftest import write_benchmark
from kdbench.core.config import Recipe
from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.evaluate import eval_batch_size
from kdbench.engine.job import CellJob
from kdbench.engine.runner import plan

CNN_PAIR = """
[[pairs]]
teacher = "cnn"
teacher_params = { width = 8 }
student = "cnn"
student_params = { width = 4 }
"""


def test_auto_is_64_on_a_cpu_and_512_on_a_gpu_and_a_number_is_kept():
    assert eval_batch_size("auto", torch.device("cpu")) == 64
    assert eval_batch_size("auto", torch.device("cuda")) == 512
    assert eval_batch_size(64, torch.device("cuda")) == 64


def test_auto_is_the_default_and_a_positive_number_or_auto_is_taken():
    assert Recipe().eval_batch_size == "auto"
    assert Recipe(eval_batch_size=64).eval_batch_size == 64
    for bad in (0, "big"):
        with pytest.raises(ValidationError):
            Recipe(eval_batch_size=bad)


def test_every_eval_batch_size_gives_the_same_record_and_the_record_names_it(tmp_path):
    context = RunContext()
    cells = plan(write_benchmark(tmp_path, CNN_PAIR), context).cells
    [cell] = [c for c in cells if c.loss.label == "ce" and c.student.name == "cnn" and c.seed == 0]
    assert cell.recipe["eval_batch_size"] == "auto"
    records = {
        size: run_cell(
            CellJob(
                cell=replace(cell, recipe={**cell.recipe, "eval_batch_size": size}), device="cpu"
            ),
            context,
        )  # fmt: skip
        for size in ("auto", 7, 512)  # 512: the whole test split in one batch
    }
    assert {size: r["status"] for size, r in records.items()} == dict.fromkeys(records, "ok")
    assert [r["protocol"]["eval_batch_size"] for r in records.values()] == [64, 7, 512]
    auto = records["auto"]
    assert auto["dataset"]["test"] > 64  # more than one batch at the automatic size
    for size in (7, 512):
        assert records[size]["metrics"] == auto["metrics"], size
        assert records[size]["history"] == auto["history"], size
        assert records[size]["cell_id"] == auto["cell_id"]  # an execution switch: one experiment
