"""The CUDA-only code paths: autocast, the fp16 grad scaler, CUDA random state in lockstep
groups, the float16 logit cache and CUDA graphs. Skipped where there is no GPU;
``benchmarks/perf/gpu.sh`` runs them on one.

GPU kernels are not bit-reproducible by default (cuDNN picks algorithms, some backward
kernels use atomics), so where the CPU tests compare exactly these compare within
float tolerance and allow one flipped test image.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import write_benchmark
from kdbench.builtin.models_small import cnn
from kdbench.engine import batches as data_module
from kdbench.engine.batches import Augment, BatchStream, normalize
from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.logit_cache import build_logit_cache
from kdbench.engine.matrix import DatasetSpec
from kdbench.engine.runner import plan, provision_teachers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ONE_IMAGE = 100 / 450 + 1e-9  # digits' test split has 450 images


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """kd, dkd and fitnets sharing one teacher on digits, one seed, on CUDA."""
    folder = tmp_path_factory.mktemp("cuda")
    bench = write_benchmark(folder)
    text = bench.read_text().replace(
        "[losses.kd]\ntemperature = 4.0", "[losses.kd]\n[losses.dkd]\nwarmup = 1\n[losses.fitnets]"
    )
    text = text.replace('student = "mlp"\nstudent_params = { hidden = 16 }',
                        'student = "cnn"\nstudent_params = { width = 4 }')  # fmt: skip
    bench.write_text(text.replace("seeds = [0, 1]", "seeds = [0]"))
    context = RunContext()
    cells = [c for c in plan(bench, context).cells if c.teacher is not None]
    teachers = provision_teachers(cells, context, folder, torch.device("cuda"))
    weights = teachers[cells[0].teacher.id]["weights"]
    jobs = [CellJob(cell=c, device="cuda", teacher_weights=weights) for c in cells]
    return context, jobs


def _with(jobs: list[CellJob], **recipe) -> list[CellJob]:
    return [replace(j, cell=replace(j.cell, recipe={**j.cell.recipe, **recipe})) for j in jobs]


def _assert_same_training(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] == "ok", (a.get("error"), b.get("error"))
    for x, y in zip(a["history"], b["history"], strict=True):
        assert y["train"]["total"] == pytest.approx(x["train"]["total"], rel=2e-2)
    assert b["metrics"]["top1"] == pytest.approx(a["metrics"]["top1"], abs=4 * ONE_IMAGE)


def test_group_on_cuda_matches_cells_one_by_one(group):
    context, jobs = group
    together = run_group(jobs, context)
    alone = [run_cell(job, context) for job in jobs]
    for a, b in zip(alone, together, strict=True):
        _assert_same_training(a, b)
        assert b["protocol"]["amp"] == ("bfloat16" if torch.cuda.is_bf16_supported() else
                                        "float16")  # fmt: skip
        assert b["protocol"]["teacher_bn_folded"] > 0
        assert b["latency"]["synchronized"] is True
        assert b["cost"]["lockstep_group"] == len(jobs)


@pytest.mark.parametrize("amp", ["fp16", "off"])
def test_other_precisions_train(group, amp):
    """fp16 goes through the grad scaler; off is plain fp32 on the GPU."""
    context, jobs = group
    records = run_group(_with(jobs, amp=amp), context)
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert record["protocol"]["amp"] == {"fp16": "float16", "off": "off"}[amp]
        first, last = (record["history"][i]["train"]["total"] for i in (0, -1))
        assert last < first  # it trains: the loss falls from the first epoch to the last


def test_cuda_graphs_train_like_eager(group):
    context, jobs = group
    eager = run_group(jobs, context)
    graphed = run_group(_with(jobs, compile="reduce-overhead"), context)
    for a, b in zip(eager, graphed, strict=True):
        _assert_same_training(a, b)
        assert b["protocol"]["compile"] == "reduce-overhead"


def test_float16_cache_holds_the_online_logits():
    context = RunContext()
    data, _ = context.dataset(DatasetSpec("digits", {}))
    torch.manual_seed(0)
    device = torch.device("cuda")
    teacher = cnn(10, 1, width=8).to(device).eval()
    augment = Augment(crop_padding=1, flip=True)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    cache = build_logit_cache(teacher, data.train, augment, mean=mean, std=std, device=device,
                              amp_dtype=torch.bfloat16)  # fmt: skip
    assert cache.dtype == torch.float16 and cache.device.type == "cuda"
    generator = torch.Generator().manual_seed(1)
    index = torch.randint(0, len(data.train), (200,), generator=generator)
    views = augment.draw(200, generator)
    inputs = normalize(augment.apply(data.train.images[index].to(device), views), mean.to(device),
                       std.to(device))  # fmt: skip
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        online = teacher(inputs).float()
    cached = cache[index.to(device), views.to(device)].float()
    torch.testing.assert_close(cached, online, rtol=1e-2, atol=1e-2)


def test_a_split_kept_in_host_memory_gives_the_same_batches(monkeypatch):
    """Splits too large for the GPU stay on the host; the batches must not change."""
    data, _ = RunContext().dataset(DatasetSpec("digits", {}))

    def stream() -> BatchStream:
        return BatchStream(data.train, batch_size=100, augment=Augment(crop_padding=1, flip=True),
                           mean=torch.tensor(data.mean), std=torch.tensor(data.std),
                           device=torch.device("cuda"), seed=3)  # fmt: skip

    resident = stream()
    monkeypatch.setattr(data_module, "fits_on", lambda device, split: False)
    streamed = stream()
    assert resident.on_device and not streamed.on_device
    for a, b in zip(resident.epoch(), streamed.epoch(), strict=True):
        assert a.inputs.device.type == b.inputs.device.type == "cuda"
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.views, b.views)
