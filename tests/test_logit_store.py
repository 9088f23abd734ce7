"""The teacher-logit store: computed by the first cell that needs the logits, read by
every later cell, process and rerun, with records identical to training without it."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import kdbench.engine.cache_policy as cache_policy
from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.engine.batches import Augment
from kdbench.engine.cache_policy import logit_demand, use_cache
from kdbench.engine.cell import run_cell
from kdbench.engine.cell_checkpoint import Outputs
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.logit_store import LogitStore, StoreKey
from kdbench.engine.matrix import LossSpec
from kdbench.engine.runner import plan, provision_teachers

VIEWS = {"crop_padding": 1, "flip": True}  # (2 * 1 + 1)^2 crops x 2 flips = 18 views


@pytest.fixture(scope="module")
def kd_jobs(tmp_path_factory):
    """Two kd cells (seeds 0 and 1) of one teacher, and a results folder for the store."""
    folder = tmp_path_factory.mktemp("store")
    bench = write_benchmark(folder)
    context = RunContext()
    cells = [c for c in plan(bench, context).cells if c.loss.label == "kd"]
    cells = [replace(c, recipe={**c.recipe, "augment": VIEWS}) for c in cells]
    info = provision_teachers(cells, context, folder, torch.device("cpu"))[cells[0].teacher.id]
    return [CellJob(cell=c, device="cpu", teacher_weights=info["weights"]) for c in cells]


def with_store(job: CellJob, out: Path, setting: str = "on") -> CellJob:
    cell = replace(job.cell, recipe={**job.cell.recipe, "logit_cache": setting})
    return replace(job, cell=cell, outputs=Outputs(str(out), checkpoint_every=0))


def counting_builds(monkeypatch) -> list[int]:
    """Count the teacher passes over the training set that build logits."""
    calls: list[int] = []
    build = cache_policy.build_logit_cache

    def counted(*args, **kwargs):
        calls.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(cache_policy, "build_logit_cache", counted)
    return calls


def test_first_cell_builds_the_logits_and_later_processes_read_them(kd_jobs, tmp_path, monkeypatch):
    builds = counting_builds(monkeypatch)
    seed0, seed1 = kd_jobs
    first = run_cell(with_store(seed0, tmp_path), RunContext())
    assert first["status"] == "ok", first["error"]["traceback"]
    assert first["protocol"]["logit_store"] == "built"
    assert len(builds) == 1
    (array,) = (tmp_path / "logits").glob("*.npy")
    train_images = first["dataset"]["train"]
    assert np.load(array, mmap_mode="r").shape == (train_images, 18, 10)  # every image, view

    # Fresh contexts stand for other processes: a pool worker, a Slurm job, a rerun.
    later = run_cell(with_store(seed1, tmp_path), RunContext())
    again = run_cell(with_store(seed0, tmp_path), RunContext())
    assert later["protocol"]["logit_store"] == again["protocol"]["logit_store"] == "read"
    assert len(builds) == 1  # no teacher pass after the first cell

    # Exact: a cell served by the store trains as one that runs the teacher every step.
    online = run_cell(replace(with_store(seed1, tmp_path, "off")), RunContext())
    assert "logit_store" not in online["protocol"] and online["protocol"]["logit_cache"] is False
    assert later["metrics"] == online["metrics"] and later["history"] == online["history"]
    assert again["metrics"] == first["metrics"] and again["history"] == first["history"]


def test_an_unusable_store_file_is_computed_again_with_a_warning(kd_jobs, tmp_path):
    seed0 = with_store(kd_jobs[0], tmp_path)
    clean = run_cell(seed0, RunContext())
    (array,) = (tmp_path / "logits").glob("*.npy")
    array.write_bytes(array.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match=r"kdbench: teacher logits .* are unusable"):
        rebuilt = run_cell(seed0, RunContext())
    assert rebuilt["protocol"]["logit_store"] == "built"
    assert rebuilt["metrics"] == clean["metrics"]
    assert np.load(array).shape[1:] == (18, 10)  # replaced by a whole array


def _slow_build(marker: str) -> torch.Tensor:
    with open(marker, "a") as handle:  # one line per build
        handle.write("built\n")
    time.sleep(1.0)  # long enough for the other process to find the file missing
    return torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)


def _get(out: str, marker: str, results) -> None:
    key = StoreKey.of("teacher", "data", VIEWS, torch.device("cpu"), 0, None)
    logits, origin = LogitStore(out).get(key, lambda: _slow_build(marker), torch.device("cpu"))
    results.put((origin, logits.sum().item()))


def test_concurrent_cells_wait_for_one_builder(tmp_path):
    marker = tmp_path / "builds.txt"
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    workers = [spawn.Process(target=_get, args=(str(tmp_path), str(marker), results))
               for _ in range(2)]  # fmt: skip
    for worker in workers:
        worker.start()
    answers = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert marker.read_text().count("built") == 1
    assert answers == [("built", 276.0), ("read", 276.0)]  # sum(range(24)) == 276


def test_auto_weighs_the_views_against_every_cell_that_can_read_them(tmp_path):
    bench = write_benchmark(tmp_path)  # ce + kd, seeds 0 and 1, 2 epochs
    context = RunContext()
    cells = plan(bench, context).cells
    demand = logit_demand(cells, context.plugins.registry)
    kd = [c for c in cells if c.loss.label == "kd"]
    assert {demand[c.id] for c in kd} == {2 + 2}  # both seeds' kd cells share the logits
    assert not any(c.id in demand for c in cells if c.loss.label == "ce")  # no teacher
    # a second logit loss per seed trains in each kd cell's lockstep group: one teacher
    # pass per group and epoch, unless the executor runs cells one by one
    twins = [replace(c, loss=LossSpec("kd_hot", "kd", {"temperature": 8.0})) for c in kd]
    assert {logit_demand(cells + twins, context.plugins.registry)[c.id] for c in twins} == {4}
    alone = logit_demand(cells + twins, context.plugins.registry, lockstep=False)
    assert {alone[c.id] for c in kd + twins} == {2 + 2 + 2 + 2}

    recipe = {"logit_cache": "auto", "augment": VIEWS, "epochs": 2}
    assert Augment(**VIEWS).num_views == 18
    assert not use_cache(recipe)  # 18 teacher passes to save 2
    assert not use_cache(recipe, demand=17)
    assert use_cache(recipe, demand=18)  # 18 passes to save 18: no dearer, shared after
    assert use_cache(recipe, stored=True)  # in the store already: free
    assert not use_cache({**recipe, "logit_cache": "off"}, demand=100, stored=True)


def test_status_shows_the_store_and_cache_clear_removes_it(kd_jobs, tmp_path):
    run_cell(with_store(kd_jobs[0], tmp_path), RunContext())
    (array,) = (tmp_path / "logits").glob("*.npy")
    runner = CliRunner()
    shown = runner.invoke(cli, ["status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    mib = array.stat().st_size / 2**20
    assert f"teacher logits 1 array(s), {mib:,.1f} MiB" in shown.output

    cleared = runner.invoke(cli, ["cache", "clear", str(tmp_path)])
    assert cleared.exit_code == 0, cleared.output
    assert f"removed 1 teacher-logit array(s), {mib:,.1f} MiB" in cleared.output
    assert not (tmp_path / "logits").exists()
    assert "teacher logits" not in runner.invoke(cli, ["status", str(tmp_path)]).output
