"""Multi-device cells: two gloo processes on the CPU train as one process would.

Digits (1 797 images) and an MLP student keep every launch to seconds; the MLP has no
BatchNorm, so two processes must give one process's weights up to float rounding (on
the CPU torch has no SyncBatchNorm). batch_size 100 does not divide the 1 437 training
images: the last batch (37) splits unevenly and exercises the shard weighting.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from test_cell_resume import with_outputs
from test_executors import records
from test_resume_kill import group_members, start

from conftest import cell_jobs, write_benchmark
from kdbench.cli import cli
from kdbench.engine.cell import run_group
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.runner import plan

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


def dry_run_ids(bench: Path, *options: str) -> list[str]:
    result = CliRunner().invoke(cli, ["run", str(bench), "--dry-run", *options])
    assert result.exit_code == 0, result.output
    return [line.split()[0] for line in result.output.splitlines() if line[:1].isalnum()][1:-1]


def test_devices_option_replaces_the_recipe_and_two_devices_are_another_experiment(
    tmp_path: Path,
):
    bench = write_benchmark(tmp_path, text=BENCH.format(epochs=1, devices=1, extra=""))
    one = dry_run_ids(bench)
    assert len(one) == 3
    assert dry_run_ids(bench, "--devices", "1") == one  # one device: the ids of old
    two = dry_run_ids(bench, "--devices", "2")
    assert len(two) == 3 and not set(two) & set(one)
    file_two = write_benchmark(tmp_path, text=BENCH.format(epochs=1, devices=2, extra=""))
    assert dry_run_ids(file_two) == two


def test_a_teacher_trained_with_the_recipe_is_the_same_teacher_whatever_the_devices(
    tmp_path: Path,
):
    """Teachers train in one process: ``[recipe] devices`` must not make a new one."""
    context, teachers = RunContext(), []
    for devices in (1, 2):
        text = BENCH.format(epochs=1, devices=devices, extra="")
        text = text[: text.index("[teacher_recipe]")] + text[text.index("[[pairs]]") :]
        (tmp_path / str(devices)).mkdir()
        bench = write_benchmark(tmp_path / str(devices), text=text)
        cells = plan(bench, context).cells
        assert {c.recipe["devices"] for c in cells} == {devices}
        teachers.append({c.teacher.id for c in cells if c.teacher})
    assert len(teachers[0]) == 1 and teachers[0] == teachers[1]


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


# --- failures: a record, never a hang -------------------------------------------------

DIVERGING = """
[[pairs]]
teacher = "cnn"
teacher_params = { width = 4 }
student = "cnn"
student_params = { width = 4 }
recipe = { optimizer = { lr = 1e8 } }
"""


@pytest.mark.slow
def test_a_rank_that_raises_fails_its_cells_records_without_hanging(tmp_path: Path):
    context, jobs = jobs_for(tmp_path, devices=2, epochs=2, extra=DIVERGING)
    group = [job for job in jobs if job.cell.student.name == "cnn" and job.cell.loss.label == "kd"]
    started = time.monotonic()
    [record] = run_group(group, context)
    assert time.monotonic() - started < 120
    assert record["status"] == "failed"
    assert record["error"]["type"] == "RankError"
    assert re.match(r"rank [01] of 2: DivergedError: loss is (nan|inf)", record["error"]["message"])


# --- the launcher killed: the ranks go, the checkpoint stays, a rerun resumes ------------


def ranks_of(process: subprocess.Popen) -> list[int]:
    """The launched ranks under a ``kdbench run`` (spawned interpreters, not trackers)."""
    return [
        pid
        for pid in group_members(process.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def wait_for_checkpoint(process: subprocess.Popen, out: Path, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while not (found := list((out / "checkpoints").glob("*/state.pt"))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    return found[0]


@pytest.mark.slow
def test_a_killed_launcher_leaves_no_rank_and_the_rerun_resumes_to_the_same_records(
    tmp_path: Path,
):
    bench = write_benchmark(tmp_path, text=BENCH.format(epochs=8, devices=2, extra=""))
    straight = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(bench), "--out", str(tmp_path / "straight"),
         "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "out"
    process = start(bench, out)
    checkpoint = wait_for_checkpoint(process, out)
    assert len(ranks_of(process)) == 2
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(process.pid) == []  # the ranks followed their launcher
    assert checkpoint.is_file()
    cell = checkpoint.parent.name.removeprefix("group-")
    assert cell not in records(out)

    again = subprocess.run(
        [sys.executable, "-m", "kdbench", "run", str(bench), "--out", str(out), "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    resumed, expected = records(out), records(tmp_path / "straight")
    assert resumed.keys() == expected.keys() and len(resumed) == 3
    assert any(r["cost"].get("resumed_from_epoch") for r in resumed.values())
    for cell_id, record in resumed.items():
        assert record["history"] == expected[cell_id]["history"]
        assert record["metrics"] == expected[cell_id]["metrics"]
        assert record["student"]["sha256"] == expected[cell_id]["student"]["sha256"]


@pytest.mark.slow
def test_a_killed_rank_fails_its_cells_and_the_matrix_goes_on(tmp_path: Path):
    bench = write_benchmark(tmp_path, text=BENCH.format(epochs=10, devices=2, extra=""))
    out = tmp_path / "out"
    process = start(bench, out)
    wait_for_checkpoint(process, out)
    os.kill(ranks_of(process)[-1], signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr  # some cells failed
    found = records(out)
    failed = [r for r in found.values() if r["status"] == "failed"]
    assert len(found) == 3 and len(failed) >= 1
    assert all(re.match(r"rank [01] of 2: ", r["error"]["message"]) for r in failed)


# --- executors: a multi-device unit as one job of N tasks ---------------------------------


@pytest.mark.slow
def test_slurm_runs_a_two_device_cell_as_one_job_of_two_tasks(tmp_path: Path):
    pytest.importorskip("submitit", reason="submitit is not installed (.[slurm])")
    executor = (
        '\n[executor]\nname = "slurm"\n'
        'params = { cluster = "local", cpus_per_task = 1, time = 10 }\n'
    )
    bench = write_benchmark(tmp_path, text=BENCH.format(epochs=1, devices=2, extra=executor))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    found = records(out)
    assert len(found) == 3 and all(r["status"] == "ok" for r in found.values())
    assert all(r["protocol"]["distributed"]["world_size"] == 2 for r in found.values())
    # one job per unit (ce alone; kd and crd in lockstep), each with a task per rank
    jobs = {r["slurm_job_id"] for r in found.values()}
    assert len(jobs) == 2
    for job in jobs:
        assert sorted(p.name for p in (out / "slurm").glob(f"{job}_*_result.pkl")) == [
            f"{job}_0_result.pkl", f"{job}_1_result.pkl"]  # fmt: skip


@pytest.mark.slow
def test_ray_runs_a_two_device_cell_as_one_task_that_launches_its_ranks(tmp_path: Path):
    ray = pytest.importorskip("ray", reason="ray is not installed (.[ray])")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        executor = '\n[executor]\nname = "ray"\nparams = { num_cpus = 1 }\n'
        text = BENCH.format(epochs=1, devices=2, extra=executor)
        bench = write_benchmark(tmp_path, text=text)
        out = tmp_path / "out"
        result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    found = records(out)
    assert len(found) == 3
    for r in found.values():
        assert r["status"] == "ok" and r["executor"] == "ray"
        assert r["protocol"]["distributed"]["world_size"] == 2
