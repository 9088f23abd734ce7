"""Multi-device cells: two gloo processes on the CPU train as one process would.

Digits (1 797 images) and an MLP student keep every launch to seconds; the MLP has no
BatchNorm, so two processes must give one process's weights up to float rounding (on
the CPU torch has no SyncBatchNorm). batch_size 100 does not divide the 1 437 training
images: the last batch (37) splits unevenly and exercises the shard weighting.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import cell_jobs, write_benchmark
from kdbench.cell import CellJob, run_group
from kdbench.cell_checkpoint import Outputs

BENCH = """
[benchmark]
name = "ddp"
seeds = [3]

[datasets.digits]

[recipe]
epochs = {epochs}
batch_size = 100
devices = {devices}
optimizer = {{ name = "sgd", lr = 0.1 }}
schedule = {{ name = "multistep", milestones = [2], gamma = 0.1 }}
augment = {{ crop_padding = 1, flip = true }}
logit_cache = "off"

[teacher_recipe]
epochs = 1
batch_size = 128
schedule = {{ name = "constant" }}

[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 4 }}
student = "mlp"
student_params = {{ hidden = 32 }}

[losses.kd]
[losses.crd]
negatives = 32
feature_dim = 8
{extra}
[measure]
latency = false
flops = false
"""


def jobs_for(folder: Path, devices: int, epochs: int = 3, extra: str = "") -> tuple:
    text = BENCH.format(epochs=epochs, devices=devices, extra=extra)
    folder.mkdir(parents=True, exist_ok=True)
    context, jobs = cell_jobs(write_benchmark(folder, text=text), folder)
    return context, jobs


def with_outputs(jobs: list[CellJob], out: Path, **settings) -> list[CellJob]:
    return [replace(job, outputs=Outputs(str(out), **settings)) for job in jobs]


def weights(out: Path, record: dict) -> dict[str, torch.Tensor]:
    return load_file(out / record["student"]["file"])


def distilled(jobs: list[CellJob]) -> list[CellJob]:
    """The kd and crd cells: one lockstep group sharing the teacher."""
    return [job for job in jobs if job.cell.loss.label != "ce"]


@pytest.mark.slow
def test_two_gloo_processes_train_the_weights_of_one_and_make_one_record_each(tmp_path: Path):
    context, one = jobs_for(tmp_path / "one", devices=1)
    _, two = jobs_for(tmp_path / "two", devices=2)
    single = run_group(with_outputs(distilled(one), tmp_path / "out1"), context)
    double = run_group(with_outputs(distilled(two), tmp_path / "out2"), context)
    assert [r["config"]["loss"]["label"] for r in double] == ["kd", "crd"]
    for a, b in zip(single, double, strict=True):
        assert b["status"] == "ok", b.get("error")
        assert b["protocol"]["distributed"] == b["protocol"]["distributed"] | {
            "world_size": 2, "backend": "gloo", "sync_bn": False}
        assert b["config"]["recipe"]["devices"] == 2
        assert a["cost"]["steps"] == b["cost"]["steps"]  # global steps: one per global batch
        first, second = weights(tmp_path / "out1", a), weights(tmp_path / "out2", b)
        assert first.keys() == second.keys()
        for key in first:
            torch.testing.assert_close(second[key], first[key], rtol=1e-4, atol=1e-5)
        assert a["history"][-1]["train"].keys() == b["history"][-1]["train"].keys()
