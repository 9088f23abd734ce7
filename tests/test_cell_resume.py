"""A cell or lockstep group interrupted mid-training resumes from its checkpoint, and its
records equal an uninterrupted run's exactly (metrics, history, final weights)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import cell_jobs, write_benchmark
from kdbench.core.errors import ConfigError
from kdbench.engine.cell import run_group
from kdbench.engine.cell_checkpoint import CheckpointKeeper, GroupCheckpoint, Outputs
from kdbench.engine.events import Progress
from kdbench.engine.job import CellJob
from kdbench.engine.lockstep import lockstep_groups
from kdbench.engine.runner import plan

EPOCHS = 4
# Augmentation (stream draws), a milestone (scheduler state), CRD (memory bank, negatives
# drawn from the global random state) and FitNets (a trained regressor in the loss).
RESUME = f"""
[benchmark]
name = "resume"
seeds = [5]

[datasets.digits]

[recipe]
epochs = {EPOCHS}
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "multistep", milestones = [2], gamma = 0.1 }}
augment = {{ crop_padding = 1, flip = true }}
logit_cache = "off"

[teacher_recipe]
epochs = 2
batch_size = 128
schedule = {{ name = "constant" }}

[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 8 }}
student = "cnn"
student_params = {{ width = 4 }}

[losses.kd]
[losses.crd]
negatives = 64
feature_dim = 16
[losses.fitnets]
weight = 1.0

[measure]
latency = false
flops = false
"""


class Interrupted(BaseException):
    """Stands in for a kill: not an Exception, so no cell turns it into a failed record."""


class StopAfter(Progress):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_done(self, epoch: int, loss: float) -> None:
        if epoch + 1 == self.epoch:
            raise Interrupted


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    bench = write_benchmark(folder, text=RESUME)
    return (*cell_jobs(bench, folder), bench)


def with_outputs(jobs: list[CellJob], out: Path, **settings) -> list[CellJob]:
    return [replace(job, outputs=Outputs(str(out), **settings)) for job in jobs]


def assert_same_training(resumed: list[dict], straight: list[dict]) -> None:
    """Same metrics, history and final weights (the kept students' bytes) per cell."""
    assert [r["cell_id"] for r in resumed] == [r["cell_id"] for r in straight]
    for a, b in zip(resumed, straight, strict=True):
        assert a["status"] == b["status"] == "ok", (a.get("error"), b.get("error"))
        assert a["metrics"] == b["metrics"]
        assert a["history"] == b["history"]
        assert a["student"]["sha256"] == b["student"]["sha256"]


def groups_of(jobs: list[CellJob]) -> tuple[list[CellJob], list[CellJob]]:
    """The teacher-sharing lockstep group and the single ``ce`` cell."""
    [group] = [g for g in lockstep_groups(jobs) if len(g) > 1]
    [single] = [g for g in lockstep_groups(jobs) if len(g) == 1]
    return group, single


@pytest.mark.parametrize("which", ["group", "single"])
def test_interrupted_cells_resume_from_checkpoint_to_identical_records(setup, tmp_path, which):
    context, jobs, _ = setup
    group, single = groups_of(jobs)
    unit = group if which == "group" else single
    if which == "group":
        assert {job.cell.loss.label for job in unit} == {"kd", "crd", "fitnets"}
    straight = run_group(with_outputs(unit, tmp_path / "straight"), context)

    out = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        run_group(with_outputs(unit, out), context, StopAfter(2))
    checkpoint = GroupCheckpoint(Outputs(str(out)), [job.cell.id for job in unit])
    assert checkpoint.path.is_file()
    resumed = run_group(with_outputs(unit, out), context)

    assert_same_training(resumed, straight)
    assert all(r["cost"]["resumed_from_epoch"] == 2 for r in resumed)
    pairs = zip(resumed, straight, strict=True)
    assert all(r["cost"]["steps"] == s["cost"]["steps"] for r, s in pairs)
    assert all("resumed_from_epoch" not in r["cost"] for r in straight)
    assert not any("resume_note" in r for r in [*resumed, *straight])
    # Kept until every record of the group is written; then deleted.
    keeper = CheckpointKeeper(Outputs(str(out)), done=lambda cell_id: False, say=print)
    for record in resumed:
        assert checkpoint.path.is_file()
        keeper.recorded(record)
    assert not checkpoint.folder.exists()


def test_keep_checkpoints_keeps_the_last_one_and_every_0_writes_none(setup, tmp_path):
    context, jobs, _ = setup
    _, single = groups_of(jobs)
    ids = [job.cell.id for job in single]
    run_group(with_outputs(single, tmp_path / "kept", keep_checkpoints=True), context)
    kept = GroupCheckpoint(Outputs(str(tmp_path / "kept")), ids)
    state = torch.load(kept.path, weights_only=True)
    assert state["epochs_done"] == EPOCHS - 1  # none after the last epoch: the record is

    off = Outputs(str(tmp_path / "off"), checkpoint_every=0)
    with pytest.raises(Interrupted):
        run_group([replace(job, outputs=off) for job in single], context, StopAfter(2))
    assert not (tmp_path / "off" / "checkpoints").exists()


def test_checkpoint_of_other_cells_is_ignored(setup, tmp_path):
    context, jobs, _ = setup
    group, _ = groups_of(jobs)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run_group(with_outputs(group, out), context, StopAfter(1))
    recipes = [job.cell.recipe for job in group]
    smaller = GroupCheckpoint(Outputs(str(out)), [job.cell.id for job in group[:2]], recipes[:2])
    assert not smaller.path.exists()  # another group id: its own (absent) file
    whole = GroupCheckpoint(Outputs(str(out)), [job.cell.id for job in group], recipes)
    saved = torch.load(whole.path, weights_only=True)
    fresh = {"stream": saved["stream"], "runs": saved["runs"]}
    assert whole.read(fresh).state["epochs_done"] == 1
    fewer = whole.read({**fresh, "runs": saved["runs"][:-1]})
    assert fewer.state is None and "holds 3 student(s), the group trains 2" in fewer.note


@pytest.mark.slow
def test_sigkilled_lockstep_run_resumes_from_checkpoint_to_identical_records(setup, tmp_path):
    """``kdbench run`` killed (SIGKILL) after a group's checkpoint: the rerun trains on."""
    _, _, bench = setup
    text = bench.read_text().replace(f"epochs = {EPOCHS}\n", "epochs = 8\n", 1)
    killed = write_benchmark(tmp_path, text=text)
    out, straight_out = tmp_path / "out", tmp_path / "straight"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(folder: Path) -> list[str]:
        return [sys.executable, "-m", "kdbench", "run", str(killed), "--out", str(folder), "-q"]

    process = subprocess.Popen(command(out), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (found := list(out.glob("checkpoints/group-*/state.pt"))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint of the lockstep group appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(found[0], weights_only=True)
    group = saved["cells"]
    assert len(group) == 3 and saved["epochs_done"] < 8
    assert not any((out / "records" / f"{cell}.json").exists() for cell in group)

    for folder in (out, straight_out):
        again = subprocess.run(command(folder), cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=600)  # fmt: skip
        assert again.returncode == 0, again.stderr
    resumed, uninterrupted = (
        [json.loads((folder / "records" / f"{cell}.json").read_text()) for cell in group]
        for folder in (out, straight_out)
    )
    assert_same_training(resumed, uninterrupted)
    assert all(r["cost"]["resumed_from_epoch"] >= saved["epochs_done"] for r in resumed)
    assert not found[0].parent.exists()


@pytest.mark.slow
def test_preempted_slurm_task_requeues_itself_and_trains_on_from_its_checkpoint(setup, tmp_path):
    """submitit's preemption signal: the task checkpoints, is requeued and resumes."""
    submitit = pytest.importorskip("submitit")
    from kdbench.builtin.executors_slurm import CellTask
    from kdbench.core.threads import using_threads

    context, jobs, _ = setup
    group, _ = groups_of(jobs)
    longer = [replace(job, cell=replace(job.cell, recipe={**job.cell.recipe, "epochs": 12}))
              for job in group]  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="local")
    executor.update_parameters(timeout_min=10)
    task = executor.submit(CellTask(), run_group, with_outputs(longer, out), str(out), 1)
    checkpoint = GroupCheckpoint(Outputs(str(out)), [job.cell.id for job in longer])
    deadline = time.monotonic() + 300
    while not checkpoint.path.is_file():
        assert not task.done(), task.exception()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    # Slurm's signal before preemption or the time limit, to the task itself (submitit's
    # local controller passes it on only at its own time limit).
    controller = task._process.pid
    [worker] = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    os.kill(int(worker), signal.SIGUSR2)
    records = task.result()
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert all(r["cost"]["resumed_from_epoch"] >= 1 for r in records)
    # Equal only on the same threads: the task trained with one.
    with using_threads(1):
        straight = run_group(with_outputs(longer, tmp_path / "straight"), context)
    assert_same_training(records, straight)


def test_run_table_changes_no_cell_id_and_rejects_a_negative_interval(setup, tmp_path):
    context, jobs, _ = setup
    kept = write_benchmark(tmp_path, text=RESUME + "\n[run]\ncheckpoint_every = 5\n"
                           "keep_checkpoints = true\nkeep_students = false\n")  # fmt: skip
    assert [cell.id for cell in plan(kept, context).cells] == [job.cell.id for job in jobs]
    bad = write_benchmark(tmp_path, text=RESUME + "\n[run]\ncheckpoint_every = -1\n")
    with pytest.raises(ConfigError, match=r"run\.checkpoint_every"):
        plan(bad, context)
