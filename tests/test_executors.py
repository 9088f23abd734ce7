"""Executors on the real digits matrix: pool, Slurm (submitit's local cluster) and Ray.

Every run here trains real cells; the runner's retry and cancel paths are driven by
small executors that wrap the real ``run`` and lose one job or stop the run.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from conftest import TINY, write_benchmark
from kdbench.builtin.executors import LocalExecutor, failed_record
from kdbench.cli import cli
from kdbench.context import RunContext
from kdbench.errors import KdbenchError
from kdbench.registry import Entry
from kdbench.runner import plan, run_benchmark

DIVERGING_PAIR = """
[[pairs]]
teacher = "cnn"
teacher_params = { width = 8 }
student = "cnn"
student_params = { width = 4 }
recipe = { optimizer = { lr = 1e8 } }
"""


def bench(folder: Path, executor: str, *, seeds: str = "[0, 1]", extra_pairs: str = "") -> Path:
    text = TINY.format(extra_pairs=extra_pairs).replace("seeds = [0, 1]", f"seeds = {seeds}")
    folder.mkdir(parents=True, exist_ok=True)
    return write_benchmark(folder, text=text + "\n" + executor)


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


def test_pool_records_equal_local_records(tmp_path: Path, context: RunContext, one_thread):
    # One torch thread everywhere: float reductions then add up in the same order in
    # this process (local) and in the pool's workers, so the numbers are identical.
    local_file = bench(tmp_path / "a", '[executor]\nname = "local"\nparams = { threads = 1 }')
    pool_file = bench(
        tmp_path / "b", '[executor]\nname = "pool"\nparams = { workers = 2, threads = 1 }'
    )
    local = run(local_file, tmp_path / "local", context)
    pool = run(pool_file, tmp_path / "pool", context)
    assert local.failed == [] and pool.failed == []
    a, b = records(tmp_path / "local"), records(tmp_path / "pool")
    assert len(a) == 4 and a.keys() == b.keys()
    # The same teacher in both runs (compared by value: the .pt files embed their names).
    (left_pt,), (right_pt,) = ((tmp_path / d / "teachers").glob("*.pt") for d in ("local", "pool"))
    left_weights, right_weights = torch.load(left_pt), torch.load(right_pt)
    assert all(torch.equal(left_weights[k], right_weights[k]) for k in left_weights)
    for cell_id, left in a.items():
        right = b[cell_id]
        assert left["executor"] == "local" and right["executor"] == "pool"
        assert left["status"] == right["status"] == "ok"
        assert left["attempts"] == right["attempts"] == 1
        assert left["provenance"]["threads"] == right["provenance"]["threads"] == 1
        assert left["config"] == right["config"]
        assert (left["teacher"] or {}).get("top1") == (right["teacher"] or {}).get("top1")
        assert left["metrics"]["top1"] == right["metrics"]["top1"]
        assert left["metrics"].get("top5") == right["metrics"].get("top5")
        assert left["size"] == right["size"] and left["dataset"] == right["dataset"]
        assert len(left["history"]) == len(right["history"]) == 2
        for x, y in zip(left["history"], right["history"]):
            assert x.keys() == y.keys()
            assert all(math.isclose(x[k], y[k], rel_tol=0, abs_tol=1e-6) for k in x)


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
    # Every try was a real submitit job with its own pickle: 2 ok + 2 x 2 failing.
    assert len(list((out / "slurm").glob("*_submitted.pkl"))) == 6
    assert all(r["slurm_job_id"] for r in found.values())

    status = CliRunner().invoke(cli, ["status", str(out)])
    assert status.exit_code == 0, status.output
    assert "4 cells" in status.output
    for line in ("done     2", "failed   2", "pending  0"):
        assert line in status.output


def test_status_lists_jobs_the_slurm_executor_left_behind(tmp_path: Path):
    # What a killed `kdbench run` leaves: a job list, one job finished, one still alive.
    path = bench(tmp_path, "", seeds="[0]")
    out = tmp_path / "out"
    (out / "slurm").mkdir(parents=True)
    (out / "benchmark.toml").write_text(path.read_text())
    alive, gone = str(os.getpid()), "999999999"
    jobs = {
        job_id: {"cell_id": f"cell{i}", "label": f"digits cell {i}", "cluster": "local",
                 "since": "2026-01-01T00:00:00+00:00"}
        for i, job_id in enumerate((alive, gone))
    }  # fmt: skip
    (out / "slurm" / "kdbench-jobs.json").write_text(json.dumps(jobs))
    (out / "slurm" / f"{gone}_0_result.pkl").write_bytes(b"")
    result = CliRunner().invoke(cli, ["status", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 cells" in result.output and "pending  2" in result.output
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[-2:]}
    assert rows == {alive: "RUNNING", gone: "finished"}


def test_slurm_job_that_cannot_see_the_results_dir_stops_the_run(
    tmp_path: Path, context: RunContext
):
    from kdbench.builtin.executors_slurm import SlurmExecutor
    from kdbench.cell import CellJob

    the_plan = plan(bench(tmp_path, "", seeds="[0]"), context)
    cell = next(c for c in the_plan.cells if c.teacher is None)
    out = tmp_path / "out"
    out.mkdir()
    executor = SlurmExecutor(cluster="local", folder=str(tmp_path / "jobs"), time=5)
    executor.start(out)
    out.rmdir()  # what a compute node sees when --out is on a disk of its own
    from kdbench.cell import run_cell

    with pytest.raises(KdbenchError, match=r"results directory .*out does not exist on"):
        list(executor.map([CellJob(cell=cell, device="cpu")], run_cell))
    executor.close()


def test_ray_runs_matrix_on_a_local_ray(tmp_path: Path, context: RunContext):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        path = bench(tmp_path, '[executor]\nname = "ray"\nparams = { num_cpus = 1 }')
        result = run(path, tmp_path / "out", context)
        assert ray.is_initialized()  # the executor leaves a Ray it did not start alone
    finally:
        ray.shutdown()
    assert result.failed == [] and result.ran == 4
    found = records(tmp_path / "out")
    assert len(found) == 4
    for r in found.values():
        assert r["status"] == "ok" and r["executor"] == "ray" and r["attempts"] == 1
        assert r["provenance"]["threads"] == 1
        assert 0 <= r["metrics"]["top1"] <= 100


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
