"""The threads policy: --threads, else the executor's, else the user's OMP_NUM_THREADS, else
cores / workers at once; honoured by every executor, recorded, and a busy machine reported."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

import kdbench.core.threads
from conftest import write_benchmark
from kdbench.builtin.executors import LocalExecutor, PoolExecutor
from kdbench.cli import cli
from kdbench.core.threads import (
    USER_ENV,
    default_threads,
    oversubscribed,
    resolve_threads,
    using_threads,
)


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight usable cores, and no OMP_NUM_THREADS of the user's."""
    monkeypatch.setattr(kdbench.core.threads, "usable_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(USER_ENV, raising=False)


def test_default_shares_the_cores_among_workers_and_never_drops_below_one(eight_cores):
    assert default_threads() == 8
    assert default_threads(3) == 2
    assert default_threads(16) == 1
    assert resolve_threads(5, workers=4) == 5
    assert resolve_threads(None, workers=4) == 2


def test_the_users_omp_num_threads_is_the_default_and_threads_override_it(
    eight_cores, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads(None, workers=4) == 3  # per process, as OpenMP reads it
    assert resolve_threads(5, workers=4) == 5
    assert PoolExecutor(workers=4)._layout([]) == [(None, 3)] * 4
    assert PoolExecutor(workers=4, threads=1)._layout([]) == [(None, 1)] * 4
    with using_threads(6):  # kdbench exports its own choice; the user's is still the default
        assert kdbench.core.threads.os.environ["OMP_NUM_THREADS"] == "6"
        assert resolve_threads(None, workers=4) == 3
    assert kdbench.core.threads.os.environ["OMP_NUM_THREADS"] == "3"
    assert USER_ENV not in kdbench.core.threads.os.environ
    for ignored in ["", "0", "four", "-2"]:
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert resolve_threads(None, workers=4) == 2


def test_without_the_users_value_kdbenchs_own_export_is_not_taken_for_it(eight_cores):
    with using_threads(6):
        assert kdbench.core.threads.os.environ["OMP_NUM_THREADS"] == "6"
        assert resolve_threads(None, workers=4) == 2
        assert PoolExecutor(workers=4)._layout([]) == [(None, 2)] * 4


def test_using_threads_sets_torch_and_children_then_restores(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with using_threads(1):
        assert torch.get_num_threads() == 1
        assert kdbench.core.threads.os.environ["OMP_NUM_THREADS"] == "1"
    assert torch.get_num_threads() == before
    assert "OMP_NUM_THREADS" not in kdbench.core.threads.os.environ


def test_a_busy_machine_is_reported_and_a_quiet_one_is_not():
    warning = oversubscribed(2, load=2.6, cores=2)
    assert warning is not None and "load average 2.6 on 2 cores" in warning
    assert "--threads" in warning
    assert oversubscribed(1, load=0.3, cores=2) is None
    assert oversubscribed(2, load=0.1, cores=2) is None


def test_pool_workers_share_the_cores_unless_threads_are_given(eight_cores):
    assert PoolExecutor(workers=4)._layout([]) == [(None, 2)] * 4
    assert PoolExecutor(workers=4, threads=1)._layout([]) == [(None, 1)] * 4


def test_local_executor_uses_the_cores_or_its_threads_and_restores(eight_cores):
    before = torch.get_num_threads()
    local = LocalExecutor(threads=1)
    local.start(None)
    assert torch.get_num_threads() == 1
    local.close()
    assert torch.get_num_threads() == before


def test_slurm_local_fallback_shares_the_cores_among_tasks_run_at_once(
    eight_cores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("submitit")
    from kdbench.builtin.executors_slurm import SlurmExecutor

    submitted = []
    # a one-device job as far as the executor looks: it never reaches a worker
    unit = SimpleNamespace(cell=SimpleNamespace(recipe={"devices": 1}))

    class Submitted(Exception):
        """Stops _submit once the array is handed over: no real task starts."""

    def map_array(*args):
        submitted.append(args[4])
        raise Submitted

    for params, expected in [({"array_parallelism": 2}, 4), ({"threads": 3}, 3),
                             ({"cpus_per_task": 2, "array_parallelism": 4}, 2)]:  # fmt: skip
        executor = SlurmExecutor(cluster="local", folder=str(tmp_path / "jobs"), **params)
        executor.start(tmp_path)
        monkeypatch.setattr(executor._executor, "map_array", map_array)
        with pytest.raises(Submitted):
            executor._submit([unit], print)
        assert submitted[-1] == [expected]


def test_run_records_the_threads_it_trained_with(tmp_path: Path):
    bench = write_benchmark(tmp_path)
    text = (
        bench.read_text()
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace("epochs = 3", "epochs = 1")
    )
    bench.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["run", str(bench), "--out", str(out), "--quiet", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 2
    for record in records:
        assert record["provenance"]["threads"] == 1


def test_threads_must_be_a_positive_integer(tmp_path: Path):
    result = CliRunner().invoke(cli, ["run", str(write_benchmark(tmp_path)), "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output


def one_cell_benchmark(folder: Path, executor: str) -> Path:
    """One cell (ce on digits, one epoch) run by ``executor`` with no threads of its own."""
    bench = write_benchmark(folder)
    text = bench.read_text().replace("seeds = [0, 1]", "seeds = [0]")
    text = text.replace("epochs = 2", "epochs = 1").replace("[losses.kd]\ntemperature = 4.0\n", "")
    params = "{ workers = 1 }" if executor == "pool" else "{}"
    bench.write_text(text + f'\n[executor]\nname = "{executor}"\nparams = {params}\n')
    return bench


@pytest.mark.parametrize(
    ("executor", "flags", "expected"),
    [("local", [], 1), ("pool", [], 1), ("local", ["--threads", "2"], 2)],
    ids=["local", "pool-worker", "threads-flag-wins"],
)
def test_a_run_trains_with_the_users_omp_num_threads(
    eight_cores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor, flags, expected
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    bench, out = one_cell_benchmark(tmp_path, executor), tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet", *flags])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["executor"] == executor
    assert record["provenance"]["threads"] == expected  # torch's count where the cell trained
