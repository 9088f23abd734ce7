"""The teacher-logit cache: exact per-view logits, and the same training results."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import write_benchmark
from kdbench.builtin.models_small import cnn
from kdbench.engine.batches import Augment, normalize
from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.logit_cache import build_logit_cache
from kdbench.engine.matrix import DatasetSpec
from kdbench.engine.runner import plan, provision_teachers


def test_cached_logits_equal_online_logits_for_sampled_views():
    context = RunContext()
    data, _ = context.dataset(DatasetSpec("digits", {}))
    torch.manual_seed(0)
    teacher = cnn(10, 1, width=8).eval()
    augment = Augment(crop_padding=1, flip=True)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    cache = build_logit_cache(teacher, data.train, augment, mean=mean, std=std,
                              device=torch.device("cpu"), batch_size=300)  # fmt: skip
    assert cache.shape == (len(data.train), 18, 10)
    generator = torch.Generator().manual_seed(1)
    index = torch.randint(0, len(data.train), (200,), generator=generator)
    views = augment.draw(200, generator)
    with torch.no_grad():
        online = teacher(normalize(augment.apply(data.train.images[index], views), mean, std))
    torch.testing.assert_close(cache[index, views], online, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def kd_job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    bench = write_benchmark(folder)
    bench.write_text(bench.read_text().replace("seeds = [0, 1]", "seeds = [0]"))
    context = RunContext()
    the_plan = plan(bench, context)
    [cell] = [c for c in the_plan.cells if c.loss.label == "kd"]
    cell = replace(cell, recipe={**cell.recipe, "augment": {"crop_padding": 1, "flip": True}})
    teachers = provision_teachers([cell], context, folder, torch.device("cpu"))
    info = teachers[cell.teacher.id]
    return context, CellJob(cell=cell, device="cpu", teacher_weights=info["weights"])


def test_a_cell_with_the_cache_matches_the_cell_without_it(kd_job):
    context, job = kd_job
    on = replace(job, cell=replace(job.cell, recipe={**job.cell.recipe, "logit_cache": "on"}))
    off = replace(job, cell=replace(job.cell, recipe={**job.cell.recipe, "logit_cache": "off"}))
    with_cache, without = run_cell(on, context), run_cell(off, context)
    assert with_cache["status"] == without["status"] == "ok"
    assert with_cache["protocol"]["logit_cache"] is True
    assert without["protocol"]["logit_cache"] is False
    assert with_cache["metrics"] == without["metrics"]
    assert with_cache["history"] == without["history"]
