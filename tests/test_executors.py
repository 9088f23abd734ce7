"""Executors on the real digits matrix: pool, Slurm (submitit's local cluster) and Ray.

Every run here trains real cells; the runner's retry and cancel paths are driven by
small executors that wrap the real ``run`` and lose one job or stop the run. With
lockstep (the default) each executor runs a lockstep group as one unit; a worker that
dies under a group fails each of its cells.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from conftest import DIVERGING_PAIR, TINY, write_benchmark
from kdbench.builtin.executors import LocalExecutor, PoolExecutor
from kdbench.cli import cli
from kdbench.core.errors import KdbenchError
from kdbench.core.registry import Entry
from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.lockstep import lockstep_groups
from kdbench.engine.runner import plan, run_benchmark
from kdbench.executors import failed_record, failed_records

SOFT_CE = "\n[losses.soft_ce]\n"  # with kd, a lockstep group of two cells per seed


def bench(
    folder: Path, executor: str, *, seeds: str = "[0, 1]", extra_pairs: str = "", losses: str = ""
) -> Path:
    text = TINY.format(extra_pairs=extra_pairs).replace("seeds = [0, 1]", f"seeds = {seeds}")
    folder.mkdir(parents=True, exist_ok=True)
    return write_benchmark(folder, text=text + losses + "\n" + executor)


def records(out: Path) -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((out / "records").glob("*.json"))
    }


@pytest.fixture(scope="module")
def context() -> RunContext:
    return RunContext()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Teachers train in this process: the same thread count makes them bit-identical."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def run(path: Path, out: Path, context: RunContext, **kwargs):
    return run_benchmark(plan(path, context), context, out_dir=out, quiet=True, **kwargs)


def group_size(record: dict) -> int:
    """How many cells trained in the record's lockstep group: kd and soft_ce share one."""
    return record["cost"]["lockstep_group"]


def lockstep_group(folder: Path, context: RunContext) -> list[CellJob]:
    """The two cells (kd and soft_ce, one seed) that train as one lockstep group."""
    the_plan = plan(bench(folder, "", seeds="[0]", losses=SOFT_CE), context)
    jobs = [CellJob(cell=cell, device="cpu") for cell in the_plan.cells]
    [group] = [g for g in lockstep_groups(jobs) if len(g) > 1]
    return group


def die(unit, context=None):
    """A ``run`` whose worker dies under it (a segfault, the OOM killer)."""
    os._exit(3)


def lose_group(executor, group: list[CellJob], run, where: str) -> list[dict]:
    """Map one group whose worker dies: one failed record per cell, saying where."""
    try:
        [result] = list(executor.map([group], run))
    finally:
        executor.close()
    assert [r["cell_id"] for r in result] == [job.cell.id for job in group]
    for r in result:
        assert r["status"] == "failed" and r["error"]["message"].startswith(where)
    return result


def test_pool_lockstep_groups_equal_local_cells_one_by_one(
    tmp_path: Path, context: RunContext, one_thread
):
    # One torch thread everywhere: float reductions then add up in the same order in
    # this process (local) and in the pool's workers, so the numbers are identical.
    local_file = bench(
        tmp_path / "a",
        '[executor]\nname = "local"\nlockstep = false\nparams = { threads = 1 }',
        losses=SOFT_CE,
    )
    pool_file = bench(
        tmp_path / "b",
        '[executor]\nname = "pool"\nparams = { workers = 2, threads = 1 }',
        losses=SOFT_CE,
    )
    local = run(local_file, tmp_path / "local", context)
    pool = run(pool_file, tmp_path / "pool", context)
    assert local.failed == [] and pool.failed == []
    a, b = records(tmp_path / "local"), records(tmp_path / "pool")
    assert len(a) == 6 and a.keys() == b.keys()
    # The same teacher in both runs (compared by value: the .pt files embed their names).
    (left_pt,), (right_pt,) = ((tmp_path / d / "teachers").glob("*.pt") for d in ("local", "pool"))
    left_weights, right_weights = torch.load(left_pt), torch.load(right_pt)
    assert all(torch.equal(left_weights[k], right_weights[k]) for k in left_weights)
    for cell_id, left in a.items():
        right = b[cell_id]
        assert left["executor"] == "local" and right["executor"] == "pool"
        assert left["status"] == right["status"] == "ok"
        assert left["attempts"] == right["attempts"] == 1
        # the pool trained kd and soft_ce of a seed as one task; local one by one
        assert group_size(left) == 1
        assert group_size(right) == (2 if left["teacher"] else 1)
        assert left["provenance"]["threads"] == right["provenance"]["threads"] == 1
        assert left["config"] == right["config"]
        assert (left["teacher"] or {}).get("top1") == (right["teacher"] or {}).get("top1")
        assert left["metrics"]["top1"] == right["metrics"]["top1"]
        assert left["metrics"].get("top5") == right["metrics"].get("top5")
        assert left["size"] == right["size"] and left["dataset"] == right["dataset"]
        assert len(left["history"]) == len(right["history"]) == 2
        for x, y in zip(left["history"], right["history"], strict=True):
            assert x["train"].keys() == y["train"].keys()
            assert all(math.isclose(x["train"][k], y["train"][k], rel_tol=0, abs_tol=1e-6)
                       for k in x["train"])  # fmt: skip
            assert (x["lr"], x["test_top1"]) == (y["lr"], y["test_top1"])


def test_a_dead_pool_worker_fails_every_cell_of_its_group(tmp_path: Path, context: RunContext):
    group = lockstep_group(tmp_path, context)
    result = lose_group(PoolExecutor(workers=1, threads=1), group, die, "pool worker 0: ")
    assert {r["error"]["type"] for r in result} == {"BrokenProcessPool"}


class Notes:
    """An out-of-process executor that trains nothing: it notes each unit and loses it."""

    in_process = False
    seen: list[tuple[object, object]] = []

    def map(self, units, run):
        for unit in units:
            self.seen.append((unit, run))
            yield failed_records(unit, "node lost", where="test")


@pytest.mark.parametrize("lockstep", [True, False])
def test_out_of_process_executors_get_groups_and_a_bare_run(
    tmp_path: Path, context: RunContext, lockstep: bool
):
    register(context, "notes", Notes)
    Notes.seen = []
    text = f'[executor]\nname = "notes"\nretries = 1\nlockstep = {str(lockstep).lower()}'
    result = run(bench(tmp_path, text, seeds="[0]", losses=SOFT_CE), tmp_path / "out", context)
    found = records(tmp_path / "out")
    assert sorted(result.failed) == sorted(found) and len(found) == 3  # ce, kd, soft_ce
    for r in found.values():
        assert r["attempts"] == 2 and r["error"]["message"] == "test: node lost"
    units = [unit for unit, _ in Notes.seen]
    [fn] = {fn for _, fn in Notes.seen}
    # the function itself, not one bound to this process's context: it must pickle
    assert fn is (run_group if lockstep else run_cell)
    assert pickle.loads(pickle.dumps(fn)) is fn
    if lockstep:  # both rounds: ce alone, kd and soft_ce together (retries are regrouped)
        labels = [[job.cell.loss.label for job in unit] for unit in units]
        assert labels == [["ce"], ["kd", "soft_ce"], ["ce"], ["kd", "soft_ce"]]
    else:
        assert all(isinstance(unit, CellJob) for unit in units) and len(units) == 6


@pytest.mark.slow
def test_slurm_local_cluster_runs_matrix_retries_and_records_failures(tmp_path: Path):
    executor = (
        '[executor]\nname = "slurm"\nretries = 1\n'
        'params = { cluster = "local", array_parallelism = 2, cpus_per_task = 1, time = 10 }'
    )
    path = bench(tmp_path, executor, seeds="[0]", extra_pairs=DIVERGING_PAIR)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    found = records(out)
    ok = [r for r in found.values() if r["status"] == "ok"]
    failed = [r for r in found.values() if r["status"] == "failed"]
    assert len(ok) == 2 and len(failed) == 2  # ce and kd for each student
    assert all(r["attempts"] == 1 and r["config"]["student"]["name"] == "mlp" for r in ok)
    for r in failed:
        assert r["config"]["student"]["name"] == "cnn"
        assert r["attempts"] == 2
        assert re.match(r"loss is (nan|inf) at epoch", r["error"]["message"])
        (earlier,) = r["earlier_errors"]
        assert re.match(r"loss is (nan|inf) at epoch", earlier["message"])
    # One array task per lockstep group: ce of both students, then kd of both; the
    # diverging cnn's two cells are retried, regrouped, as two more tasks.
    assert len(list((out / "slurm").glob("*_submitted.pkl"))) == 4
    assert all(group_size(r) == 2 for r in ok)
    assert len({r["slurm_job_id"] for r in found.values()}) == 4

    status = CliRunner().invoke(cli, ["status", str(out)])
    assert status.exit_code == 0, status.output
    assert "4 cells" in status.output
    for line in ("done     2", "failed   2", "pending  0"):
        assert line in status.output


def leave_slurm_jobs(out: Path) -> tuple[str, str]:
    """What a killed `kdbench run` leaves: a job list, one job finished, one still alive.

    The live job runs a lockstep group of two cells; the finished one a single cell.
    """
    (out / "slurm").mkdir(parents=True)
    alive, gone = str(os.getpid()), "999999999"
    jobs = {
        job_id: {"cell_ids": [f"cell{i}{j}" for j in range(i + 1)],
                 "labels": [f"digits cell {i}{j}" for j in range(i + 1)],
                 "cluster": "local", "since": "2026-01-01T00:00:00+00:00"}
        for i, job_id in enumerate((gone, alive))
    }  # fmt: skip
    (out / "slurm" / "kdbench-jobs.json").write_text(json.dumps(jobs))
    (out / "slurm" / f"{gone}_0_result.pkl").write_bytes(b"")
    return alive, gone


def test_status_lists_jobs_the_slurm_executor_left_behind(tmp_path: Path):
    path = bench(tmp_path, "", seeds="[0]")
    out = tmp_path / "out"
    alive, gone = leave_slurm_jobs(out)
    (out / "benchmark.toml").write_text(path.read_text())
    result = CliRunner().invoke(cli, ["status", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 cells" in result.output and "pending  2" in result.output
    rows = [line.split() for line in result.output.splitlines()[-3:]]
    assert [row[:2] for row in rows[:2]] == [[gone, "finished"], [alive, "RUNNING"]]
    assert rows[0][2:4] == rows[1][2:4] == ["digits", "cell"]
    assert [rows[0][4], rows[1][4], rows[2]] == ["00", "10", ["digits", "cell", "11"]]


@pytest.mark.parametrize(("executor", "lists_jobs"), [("slurm", True), ("local", False)])
def test_status_without_a_benchmark_asks_the_executor_the_run_noted(
    tmp_path: Path, executor: str, lists_jobs: bool
):
    from kdbench.builtin.executors_slurm import SlurmExecutor
    from kdbench.records.executor_note import ExecutorNote, write_executor_note

    out = tmp_path / "out"
    alive, gone = leave_slurm_jobs(out)
    cls = {"slurm": SlurmExecutor, "local": LocalExecutor}[executor]
    write_executor_note(out, ExecutorNote.of(executor, {}, cls))
    result = CliRunner().invoke(cli, ["status", str(out)])
    assert result.exit_code == 0, result.output
    assert "? cells" in result.output  # no benchmark file: nothing planned
    rows = [line.split() for line in result.output.splitlines()]
    listed = [row[:2] for row in rows if row[:1] == [alive]]
    if lists_jobs:
        assert "slurm job" in result.output
        assert listed == [[alive, "RUNNING"]]
    else:  # the local executor submits nothing: the job list is not its own
        assert " job " not in result.output and listed == []


def test_job_list_of_an_older_kdbench_still_reads(tmp_path: Path):
    from kdbench.builtin.executors_slurm import JOBS_FILE, job_states

    old = {"999999999": {"cell_id": "abc", "label": "digits cell", "cluster": "local",
                         "since": "2026-01-01T00:00:00+00:00"}}  # fmt: skip
    (tmp_path / JOBS_FILE).write_text(json.dumps(old))
    [row] = job_states(tmp_path)
    assert row["cell_ids"] == ["abc"] and row["labels"] == ["digits cell"]
    assert row["state"] == "gone" and "cell_id" not in row


def test_a_dead_slurm_job_fails_every_cell_of_its_group(
    tmp_path: Path, context: RunContext, monkeypatch
):
    submitit = pytest.importorskip("submitit", reason="submitit is not installed (.[slurm])")
    from kdbench.builtin.executors_slurm import JOBS_FILE, SlurmExecutor

    # submitit waits 15 s for a result file a slow shared disk may still be writing;
    # a dead job writes none (submitit's own tests set this to 0 too).
    monkeypatch.setattr(submitit.core.core.Job, "_results_timeout_s", 0)
    group = lockstep_group(tmp_path, context)
    folder, seen = tmp_path / "jobs", tmp_path / "seen.json"

    def dies(unit, context=None):  # pickled by value: submitit uses cloudpickle
        shutil.copy(folder / JOBS_FILE, seen)  # the job list `kdbench status` reads
        os._exit(3)

    out = tmp_path / "out"
    out.mkdir()
    executor = SlurmExecutor(cluster="local", folder=str(folder), time=5)
    executor.start(out)
    result = lose_group(executor, group, dies, "slurm job ")
    [(job_id, listed)] = json.loads(seen.read_text()).items()
    assert listed["cell_ids"] == [job.cell.id for job in group]
    assert listed["labels"] == [job.cell.label() for job in group]
    for r in result:
        assert r["slurm_job_id"] == job_id
        assert r["error"]["message"].startswith(f"slurm job {job_id}: ")


def test_slurm_job_that_cannot_see_the_results_dir_stops_the_run(
    tmp_path: Path, context: RunContext
):
    from kdbench.builtin.executors_slurm import SlurmExecutor

    the_plan = plan(bench(tmp_path, "", seeds="[0]"), context)
    cell = next(c for c in the_plan.cells if c.teacher is None)
    out = tmp_path / "out"
    out.mkdir()
    executor = SlurmExecutor(cluster="local", folder=str(tmp_path / "jobs"), time=5)
    executor.start(out)
    out.rmdir()  # what a compute node sees when --out is on a disk of its own
    with pytest.raises(KdbenchError, match=r"results directory .*out does not exist on"):
        list(executor.map([CellJob(cell=cell, device="cpu")], run_cell))
    executor.close()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    ray = pytest.importorskip("ray", reason="ray is not installed (.[ray])")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_ray_runs_matrix_on_a_local_ray(tmp_path: Path, context: RunContext, local_ray):
    path = bench(tmp_path, '[executor]\nname = "ray"\nparams = { num_cpus = 1 }', losses=SOFT_CE)
    result = run(path, tmp_path / "out", context)
    assert local_ray.is_initialized()  # the executor leaves a Ray it did not start alone
    assert result.failed == [] and result.ran == 6
    found = records(tmp_path / "out")
    assert len(found) == 6
    for r in found.values():
        assert r["status"] == "ok" and r["executor"] == "ray" and r["attempts"] == 1
        assert r["provenance"]["threads"] == 1
        assert 0 <= r["metrics"]["top1"] <= 100
        assert group_size(r) == (2 if r["teacher"] else 1)  # kd and soft_ce: one task


def test_a_dead_ray_worker_fails_every_cell_of_its_group(
    tmp_path: Path, context: RunContext, local_ray
):
    from kdbench.builtin.executors_ray import RayExecutor

    def dies(unit, context=None):  # pickled by value: Ray workers cannot import tests
        os._exit(3)

    group = lockstep_group(tmp_path, context)
    executor = RayExecutor()
    executor.start(tmp_path)
    result = lose_group(executor, group, dies, "ray task: ")
    assert all("died" in r["error"]["message"] for r in result)


class LosesFirstTry(LocalExecutor):
    """Runs cells for real, but the first try of the first cell is lost (a dead node)."""

    calls: list[str] = []

    def __init__(self) -> None:
        super().__init__()
        self.lost = False

    def start(self, out_dir) -> None:
        self.calls.append("start")

    def map(self, jobs, run):
        jobs = list(jobs)
        self.calls.append(f"map {len(jobs)}")
        for job in jobs:
            if not self.lost:
                self.lost = True
                yield failed_record(job, "node lost", where="test")
            else:
                yield run(job)

    def cancel(self) -> None:
        self.calls.append("cancel")

    def close(self) -> None:
        self.calls.append("close")


class StopsAfterFirst(LosesFirstTry):
    """Runs one cell for real, then the user presses Ctrl-C."""

    def map(self, jobs, run):
        for job in jobs:
            yield run(job)
            raise KeyboardInterrupt


def register(context: RunContext, name: str, cls: type) -> None:
    if name not in {e.name for e in context.plugins.registry.entries("executors")}:
        context.plugins.registry.add(Entry("executors", name, cls, "tests", ""))


def test_a_lost_try_is_retried_in_a_further_round(tmp_path: Path, context: RunContext):
    register(context, "loses-first-try", LosesFirstTry)
    LosesFirstTry.calls = []
    # lockstep off: this test executor hands out one cell per job
    text = '[executor]\nname = "loses-first-try"\nretries = 2\nlockstep = false'
    path = bench(tmp_path, text, seeds="[0]")
    result = run(path, tmp_path / "out", context)
    assert result.failed == []
    attempts = sorted(r["attempts"] for r in records(tmp_path / "out").values())
    assert attempts == [1, 2]
    retried = next(r for r in records(tmp_path / "out").values() if r["attempts"] == 2)
    assert retried["earlier_errors"] == [{"type": "ExecutorError", "message": "test: node lost"}]
    assert LosesFirstTry.calls == ["start", "map 2", "map 1", "close"]


def test_ctrl_c_cancels_the_executor_and_keeps_finished_cells(tmp_path: Path, context: RunContext):
    register(context, "stops-after-first", StopsAfterFirst)
    StopsAfterFirst.calls = []
    path = bench(tmp_path, '[executor]\nname = "stops-after-first"\nlockstep = false', seeds="[0]")
    with pytest.raises(KeyboardInterrupt):
        run(path, tmp_path / "out", context)
    assert StopsAfterFirst.calls == ["start", "cancel", "close"]
    assert [r["status"] for r in records(tmp_path / "out").values()] == ["ok"]


@pytest.mark.parametrize(
    ("module", "cls", "extra"),
    [("executors_slurm", "SlurmExecutor", "slurm"), ("executors_ray", "RayExecutor", "ray")],
)
def test_missing_extra_says_what_to_install(tmp_path, monkeypatch, module, cls, extra):
    import importlib

    monkeypatch.setitem(sys.modules, extra if extra == "ray" else "submitit", None)
    executor = getattr(importlib.import_module(f"kdbench.builtin.{module}"), cls)()
    with pytest.raises(KdbenchError, match=rf"pip install 'kdbench\[{extra}\]'"):
        executor.start(tmp_path)


def test_bad_executor_parameters_are_user_errors():
    from kdbench.builtin.executors import PoolExecutor

    with pytest.raises(KdbenchError, match="workers must be a positive integer"):
        PoolExecutor(workers=0)
    from kdbench.builtin.executors_slurm import SlurmExecutor

    with pytest.raises(KdbenchError, match="cluster must be"):
        SlurmExecutor(cluster="kubernetes")


class DescribesJobs(LosesFirstTry):
    """An executor that lists the jobs a run left submitted, as ``kdbench status`` asks."""

    seen: list[tuple[Path, dict]] = []

    def __init__(self, folder: str | None = None) -> None:
        super().__init__()
        self.folder = folder

    @staticmethod
    def job_states(out_dir: Path, params: dict) -> list[dict]:
        DescribesJobs.seen.append((Path(out_dir), dict(params)))
        job = {"state": "RUNNING", "labels": ["a cell"], "since": "-"}
        return [{"job_id": "7", "cell_ids": ["not-done"], **job},
                {"job_id": "8", "cell_ids": [], **job}]  # fmt: skip


def test_status_lists_the_jobs_each_executor_describes(tmp_path: Path, context: RunContext):
    from kdbench.cli.status import status

    register(context, "describes-jobs", DescribesJobs)
    DescribesJobs.seen = []
    text = '[executor]\nname = "describes-jobs"\nparams = { folder = "queue" }'
    path = bench(tmp_path, text, seeds="[0]")
    out = tmp_path / "out"
    out.mkdir()
    state = status(out, path, context=lambda: context)
    assert [job["job_id"] for job in state.jobs] == ["7"]  # job 8 has no cell left to do
    assert DescribesJobs.seen == [(out, {"folder": "queue"})]  # the file's executor's params


class DescribesLostJobs(DescribesJobs):
    """Loses every job it is given (no cell trains): its jobs are still out there."""

    def map(self, units, run):
        return (failed_records(unit, "submitted", where="test") for unit in units)


def test_status_asks_the_executor_a_run_used_with_its_parameters(
    tmp_path: Path, context: RunContext
):
    from kdbench.cli.status import status

    register(context, "describes-lost-jobs", DescribesLostJobs)
    text = '[executor]\nname = "describes-lost-jobs"\nparams = { folder = "q" }'
    out = tmp_path / "out"
    run(bench(tmp_path, text, seeds="[0]"), out, context)
    (out / "benchmark.toml").unlink()  # the note alone says which executor to ask
    DescribesJobs.seen = []
    state = status(out, context=lambda: context)
    assert state.cells is None and state.executor == "describes-lost-jobs"
    assert [job["job_id"] for job in state.jobs] == ["7"]
    assert DescribesJobs.seen == [(out, {"folder": "q"})]
