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
            "world_size": 2,
            "backend": "gloo",
            "sync_bn": False,
        }
        assert b["config"]["recipe"]["devices"] == 2
        assert a["cost"]["steps"] == b["cost"]["steps"]  # global steps: one per global batch
        first, second = weights(tmp_path / "out1", a), weights(tmp_path / "out2", b)
        assert first.keys() == second.keys()
        for key in first:
            torch.testing.assert_close(second[key], first[key], rtol=1e-4, atol=1e-5)
        assert a["history"][-1]["train"].keys() == b["history"][-1]["train"].keys()


# --- CRD's memory bank: the same on every rank, and the same as in one process ----------

CRD_TRAIN, CRD_BATCH = 40, 9  # 9 rows split 5 + 4 over two ranks


def crd_loss():
    """A set-up CRD with seeded heads and banks (a small training set of three classes)."""
    from kdbench import LossContext
    from kdbench.builtin.losses_crd import CRD

    torch.manual_seed(0)
    loss = CRD(negatives=16, feature_dim=8)
    loss.setup(
        LossContext(
            num_classes=3,
            num_train=CRD_TRAIN,
            student_feature_shapes={"pool": (6,)},
            teacher_feature_shapes={"pool": (5,)},
            train_labels=torch.arange(CRD_TRAIN) % 3,
        )
    )
    return loss


def crd_banks(rank: int, size: int) -> dict[str, torch.Tensor]:
    """CRD's state after three training forwards on this rank's slices of fixed batches."""
    from kdbench import LossInputs

    loss = crd_loss()
    data = torch.Generator().manual_seed(1)
    for _ in range(3):
        indices = torch.randperm(CRD_TRAIN, generator=data)[:CRD_BATCH]
        student = torch.randn(CRD_BATCH, 6, generator=data)
        teacher = torch.randn(CRD_BATCH, 5, generator=data)
        mine = torch.tensor_split(torch.arange(CRD_BATCH), size)[rank]
        loss(
            LossInputs(
                student_logits=torch.randn(CRD_BATCH, 3, generator=data)[mine],
                teacher_logits=None,
                targets=(indices % 3)[mine],
                indices=indices[mine],
                epoch=0,
                epochs=1,
                student_features={"pool": student[mine]},
                teacher_features={"pool": teacher[mine]},
            )
        )
    return {k: v.clone() for k, v in loss.state_dict().items()}


def crd_rank(rank: int, size: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        torch.save(crd_banks(rank, size), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_crd_memory_is_equal_on_every_rank_and_to_one_process(tmp_path: Path):
    torch.multiprocessing.spawn(
        crd_rank, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True
    )
    single = crd_banks(0, 1)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert set(single) >= {"memory_student", "memory_teacher", "z_student", "z_teacher"}
    assert not torch.equal(single["memory_student"], crd_loss().state_dict()["memory_student"])
    for state in ranks:
        for key, value in single.items():
            torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)
