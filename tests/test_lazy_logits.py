"""The lazily filled teacher-logit store: with more views than epochs, each cell computes
only the (image, view) entries no cell has computed yet, and trains exactly as a cell
that runs the teacher at every step."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_logit_store import kd_jobs, with_store  # noqa: F401 - kd_jobs is a fixture

from kdbench.builtin.cifar_zoo.resnet import resnet8x4
from kdbench.builtin.models_small import cnn
from kdbench.cli import cli
from kdbench.engine.batches import Augment, BatchStream
from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.lazy_logits import MIN_ROWS, teacher_rows
from kdbench.engine.matrix import DatasetSpec
from kdbench.engine.online_teacher import OnlineTeacher

VIEWS = Augment(crop_padding=1, flip=True)  # 18 views, more than the cells' 2 epochs


@pytest.mark.parametrize("model", ["cnn", "resnet8x4"])
def test_an_image_has_the_same_logits_whatever_images_share_its_forward(model):
    torch.manual_seed(0)
    if model == "cnn":
        teacher, inputs = cnn(10, 1, width=8), torch.randn(128, 1, 8, 8)
    else:
        teacher, inputs = resnet8x4(num_classes=100, in_channels=3), torch.randn(64, 3, 32, 32)
    online = OnlineTeacher(teacher, None, None)
    whole = online.model(inputs)
    generator = torch.Generator().manual_seed(1)
    for count in (1, 2, 3, 5, MIN_ROWS, 40):
        rows = torch.randperm(len(inputs), generator=generator)[:count]
        assert torch.equal(teacher_rows(online, inputs[rows]), whole[rows]), count


class Forwards:
    """Counts the images the teacher runs on while training (online or filling)."""

    def __init__(self, monkeypatch) -> None:
        self.images = 0
        call = OnlineTeacher.__call__

        def counted(teacher, batch):
            self.images += len(batch.inputs)
            return call(teacher, batch)

        monkeypatch.setattr(OnlineTeacher, "__call__", counted)


def drawn(job, epochs: int = 2) -> set[tuple[int, int]]:
    """The (image, view) entries a cell's stream draws, replayed from its seed."""
    data, _ = RunContext().dataset(DatasetSpec("digits", {}))
    stream = BatchStream(data.train, batch_size=job.cell.recipe["batch_size"], augment=VIEWS,
                         mean=torch.tensor(data.mean), std=torch.tensor(data.std),
                         device=torch.device("cpu"), seed=job.cell.seed)  # fmt: skip
    return {(int(i), int(v)) for _ in range(epochs) for b in stream.epoch()
            for i, v in zip(b.indices, b.views, strict=True)}  # fmt: skip


def filled(out) -> int:
    (checks,) = (out / "logits").glob("*.filled")
    return int(np.count_nonzero(np.load(checks)))


@pytest.fixture(scope="module")
def online_records(kd_jobs):  # noqa: F811
    """Each seed's kd cell trained with a teacher forward at every step."""
    cells = [replace(j.cell, recipe={**j.cell.recipe, "logit_cache": "off"}) for j in kd_jobs]
    off = [run_cell(replace(j, cell=c), RunContext()) for j, c in zip(kd_jobs, cells, strict=True)]
    assert all(r["protocol"]["logit_cache"] is False for r in off)
    return off


def same_training(record, reference) -> bool:
    return record["metrics"] == reference["metrics"] and record["history"] == reference["history"]


def test_cells_fill_the_store_as_batches_need_it_and_read_what_others_filled(
    kd_jobs,  # noqa: F811
    online_records,
    tmp_path,
    monkeypatch,
):
    seed0, seed1 = kd_jobs
    assert seed0.cell.recipe["epochs"] == 2 < VIEWS.num_views
    forwards = Forwards(monkeypatch)
    first = run_cell(with_store(seed0, tmp_path, "auto"), RunContext())
    assert first["status"] == "ok", first["error"]["traceback"]
    assert first["protocol"]["logit_store"] == "filled"
    images = first["dataset"]["train"]
    batches = 2 * -(-images // seed0.cell.recipe["batch_size"])
    entries = first["protocol"]["logit_store_entries"]
    assert entries["computed"] + entries["read"] == 2 * images  # every image, each epoch
    assert entries["computed"] == len(drawn(seed0)) == filled(tmp_path)  # each entry once
    assert entries["read"] > 0  # drawn again in the second epoch: read, not recomputed
    assert entries["computed"] <= forwards.images <= entries["computed"] + MIN_ROWS * batches

    # Another process (a fresh context), another seed: reads the entries the first filled.
    forwards.images = 0
    second = run_cell(with_store(seed1, tmp_path, "auto"), RunContext())
    entries = second["protocol"]["logit_store_entries"]
    new = drawn(seed1) - drawn(seed0)
    assert entries["computed"] == len(new) and entries["read"] == 2 * images - len(new)
    assert entries["computed"] <= forwards.images <= entries["computed"] + MIN_ROWS * batches
    assert forwards.images < 2 * images  # the online teacher runs on every image, each epoch
    assert filled(tmp_path) == len(drawn(seed0) | drawn(seed1))

    # Exact: each cell trains as one that runs the teacher at every step.
    assert same_training(first, online_records[0]) and same_training(second, online_records[1])


def test_a_damaged_store_is_not_trusted(kd_jobs, online_records, tmp_path):  # noqa: F811
    seed0 = with_store(kd_jobs[0], tmp_path, "auto")
    first = run_cell(seed0, RunContext())
    computed = first["protocol"]["logit_store_entries"]["computed"]
    (array,) = (tmp_path / "logits").glob("*.lazy.npy")
    logits = np.load(array, mmap_mode="r+")
    logits += 0.5  # every entry's bytes changed, their check words left as they were
    logits.flush()
    del logits
    again = run_cell(seed0, RunContext())
    assert again["protocol"]["logit_store_entries"] == first["protocol"]["logit_store_entries"]
    assert same_training(again, online_records[0])

    (checks,) = (tmp_path / "logits").glob("*.filled")
    checks.write_bytes(checks.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match=r"kdbench: teacher logits .* are unusable"):
        rebuilt = run_cell(seed0, RunContext())
    assert rebuilt["protocol"]["logit_store_entries"]["computed"] == computed
    assert same_training(rebuilt, online_records[0])
    assert filled(tmp_path) == computed


def _train(job, queue) -> None:
    record = run_cell(job, RunContext())
    queue.put((job.cell.seed, record["metrics"], record["history"],
               record["protocol"].get("logit_store_entries")))  # fmt: skip


def test_two_processes_fill_one_store_at_once(kd_jobs, online_records, tmp_path):  # noqa: F811
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    jobs = [with_store(job, tmp_path, "auto") for job in kd_jobs]
    workers = [spawn.Process(target=_train, args=(job, queue)) for job in jobs]
    for worker in workers:
        worker.start()
    answers = sorted((queue.get(timeout=240) for _ in workers), key=lambda answer: answer[0])
    for worker in workers:
        worker.join(timeout=60)
    for (seed, metrics, history, entries), online in zip(answers, online_records, strict=True):
        assert entries is not None and entries["computed"] > 0, seed
        assert metrics == online["metrics"] and history == online["history"], seed
    assert filled(tmp_path) == len(drawn(kd_jobs[0]) | drawn(kd_jobs[1]))


def test_status_counts_a_lazy_array_by_what_it_takes_and_cache_clear_removes_it(
    kd_jobs,  # noqa: F811
    tmp_path,
):
    run_cell(with_store(kd_jobs[0], tmp_path, "auto"), RunContext())
    files = [*(tmp_path / "logits").glob("*.lazy.npy"), *(tmp_path / "logits").glob("*.filled")]
    assert len(files) == 2
    taken = sum(min(f.stat().st_size, f.stat().st_blocks * 512) for f in files)
    runner = CliRunner()
    shown = runner.invoke(cli, ["status", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert f"teacher logits 1 array(s), {taken / 2**20:,.1f} MiB" in shown.output
    cleared = runner.invoke(cli, ["cache", "clear", str(tmp_path)])
    assert cleared.exit_code == 0, cleared.output
    assert f"removed 1 teacher-logit array(s), {taken / 2**20:,.1f} MiB" in cleared.output
    assert not (tmp_path / "logits").exists()
