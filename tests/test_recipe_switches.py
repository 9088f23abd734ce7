"""Channels-last and ``torch.compile`` change how a cell is computed, not what."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.runner import plan, provision_teachers


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
    assert changed["latency"]["memory_format"] == "channels_last"
    assert default["latency"]["memory_format"] == "contiguous"
    for a, b in zip(default["history"], changed["history"], strict=True):
        assert a["train"]["total"] == pytest.approx(b["train"]["total"], rel=1e-4)
    assert changed["metrics"]["top1"] == pytest.approx(default["metrics"]["top1"], abs=0.5)


def test_channels_last_on_a_model_without_convolutions_is_a_recorded_no_op(tmp_path):
    bench = write_benchmark(tmp_path)  # its student is the mlp: no 4-D tensors
    text = bench.read_text().replace("seeds = [0, 1]", "seeds = [0]")
    switch = "batch_size = 128\nchannels_last = true\noptimizer"
    bench.write_text(text.replace("batch_size = 128\noptimizer", switch, 1))
    validated = CliRunner().invoke(cli, ["validate", str(bench)])
    assert validated.exit_code == 0, validated.output
    context = RunContext()
    [cell] = [c for c in plan(bench, context).cells if c.loss.label == "ce"]
    assert cell.recipe["channels_last"] is True
    plain = replace(cell, recipe={**cell.recipe, "channels_last": False})
    changed = run_cell(CellJob(cell=cell, device="cpu"), context)
    default = run_cell(CellJob(cell=plain, device="cpu"), context)
    assert changed["status"] == default["status"] == "ok", changed.get("error")
    assert changed["protocol"]["channels_last"] is False  # what applied, not what was asked
    assert changed["latency"]["memory_format"] == "contiguous"
    for a, b in zip(default["history"], changed["history"], strict=True):
        assert a["train"]["total"] == b["train"]["total"]
    assert changed["metrics"]["top1"] == default["metrics"]["top1"]


def test_compiled_group_trains_like_eager_and_keeps_feature_taps(tmp_path):
    """Compiled teacher and students, one of them tapped (FitNets), match eager training.

    Two students of one class, one with taps and one without, once shared a compiled
    graph and the taps stayed empty; FitNets would then fail on a missing feature.
    """
    bench = write_benchmark(tmp_path)
    bench.write_text(
        bench.read_text()
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace("[losses.kd]\ntemperature = 4.0", "[losses.kd]\n[losses.fitnets]")
        .replace('student = "mlp"\nstudent_params = { hidden = 16 }',
                 'student = "cnn"\nstudent_params = { width = 4 }')
    )  # fmt: skip
    context = RunContext()
    cells = [c for c in plan(bench, context).cells if c.teacher is not None]
    assert sorted(c.loss.label for c in cells) == ["fitnets", "kd"]
    teachers = provision_teachers(cells, context, tmp_path, torch.device("cpu"))
    weights = teachers[cells[0].teacher.id]["weights"]

    def group(setting):
        return [
            CellJob(cell=replace(c, recipe={**c.recipe, "compile": setting}), device="cpu",
                    teacher_weights=weights)
            for c in cells
        ]  # fmt: skip

    eager = run_group(group(False), context)
    fast = run_group(group("default"), context)
    for a, b in zip(eager, fast, strict=True):
        assert a["status"] == b["status"] == "ok", b.get("error")
        assert b["protocol"]["compile"] == "default" and a["protocol"]["compile"] is False
        for x, y in zip(a["history"], b["history"], strict=True):
            assert x["train"].keys() == y["train"].keys()
            assert y["train"]["total"] == pytest.approx(x["train"]["total"], rel=1e-4)
        # fused kernels round differently; at most one of the 450 test images may flip
        assert b["metrics"]["top1"] == pytest.approx(a["metrics"]["top1"], abs=0.3)
