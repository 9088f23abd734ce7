"""Channels-last training is a layout change, not a different computation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conftest import write_benchmark
from kdbench.cell import CellJob, run_cell
from kdbench.context import RunContext
from kdbench.runner import plan


def test_channels_last_trains_the_same_student(tmp_path):
    bench = write_benchmark(tmp_path)
    bench.write_text(
        bench.read_text()
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace('student = "mlp"\nstudent_params = { hidden = 16 }',
                 'student = "cnn"\nstudent_params = { width = 4 }')
    )  # fmt: skip
    context = RunContext()
    [cell] = [c for c in plan(bench, context).cells if c.loss.label == "ce"]
    channels_last = replace(cell, recipe={**cell.recipe, "channels_last": True})
    default = run_cell(CellJob(cell=cell, device="cpu"), context)
    changed = run_cell(CellJob(cell=channels_last, device="cpu"), context)
    assert default["status"] == changed["status"] == "ok"
    assert changed["protocol"]["channels_last"] is True
    for a, b in zip(default["history"], changed["history"]):
        assert a["total"] == pytest.approx(b["total"], rel=1e-4)
    assert changed["metrics"]["top1"] == pytest.approx(default["metrics"]["top1"], abs=0.5)
