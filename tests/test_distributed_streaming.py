"""Multi-device cells on an image folder: each rank reads only its slice of every batch.

The ranks draw the same epoch order and per-sample seeds, so their slices together are
the one-process batch, file for file and view for view; two gloo ranks then train the
weights one process trains (an MLP student: no BatchNorm, which the CPU cannot sync).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_cell_resume import with_outputs
from test_distributed import weights
from test_imagefolder import TINY_STREAM, norm, small, write_folder

from conftest import cell_jobs
from kdbench.engine import streaming
from kdbench.engine.batches import batch_part
from kdbench.engine.cell import run_group
from kdbench.engine.distributed import ShardedStream, World
from kdbench.engine.streaming import LoaderStream

BATCH = 5  # 12 training images: batches of 5, 5 and 2 split 3+2, 3+2 and 1+1


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "images", {"train": 4, "val": 2})


def loader_stream(root: Path, seed: int = 0) -> LoaderStream:
    mean, std = norm()
    return LoaderStream(small(root).train, batch_size=BATCH, mean=mean, std=std,
                        device=torch.device("cpu"), seed=seed)  # fmt: skip


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The dataset indices read (and decoded) in this process, in order."""
    reads: list[int] = []
    read = streaming._Files.__getitem__

    def counted(self, key):
        reads.append(key[0])
        return read(self, key)

    monkeypatch.setattr(streaming._Files, "__getitem__", counted)
    return reads


def test_batch_parts_tile_the_batch_in_rank_order_as_tensor_split():
    for total in range(1, 12):
        for size in (1, 2, 3, 4):
            parts = [batch_part(total, rank, size) for rank in range(size)]
            if total < size:
                assert parts == [None] * size
                continue
            expected = torch.tensor_split(torch.arange(total), size)
            assert [list(range(total))[p] for p in parts] == [e.tolist() for e in expected]


def rank_batches(root: Path, rank: int, size: int, epochs: int = 2) -> list[tuple]:
    world = World(rank, size, "gloo", torch.device("cpu"))
    sharded = ShardedStream(loader_stream(root), world)
    found = []
    for _ in range(epochs):
        for batch in sharded.epoch():
            found.append((batch.inputs, batch.indices, batch.labels, world.share))
    return found


def test_each_rank_reads_only_its_slice_and_the_slices_make_the_one_process_batch(
    folder: Path, monkeypatch: pytest.MonkeyPatch
):
    reads = counting_reads(monkeypatch)
    source = loader_stream(folder)
    whole = [b for _ in range(2) for b in source.epoch()]
    assert len(reads) == 2 * 12
    ranks = []
    for rank in range(2):
        reads.clear()
        ranks.append(rank_batches(folder, rank, 2))
        # its share of every epoch's 12 images, never a file of the other rank's slices
        assert len(reads) == [2 * (3 + 3 + 1), 2 * (2 + 2 + 1)][rank]
        assert sorted(reads) == sorted(i for batch in ranks[-1] for i in batch[1].tolist())
    assert len(ranks[0]) == len(ranks[1]) == len(whole) == 6
    for one, first, second in zip(whole, ranks[0], ranks[1], strict=True):
        assert torch.equal(torch.cat([first[0], second[0]]), one.inputs)  # same views
        assert torch.equal(torch.cat([first[1], second[1]]), one.indices)
        assert torch.equal(torch.cat([first[2], second[2]]), one.labels)
        assert first[3] + second[3] == pytest.approx(1.0)
        assert first[3] == pytest.approx(len(first[1]) / len(one.indices))


def test_a_rank_of_a_batch_smaller_than_the_world_reads_nothing_of_it(
    folder: Path, monkeypatch: pytest.MonkeyPatch
):
    reads = counting_reads(monkeypatch)
    batches = rank_batches(folder, 2, 3, epochs=1)  # 5, 5, 2: the last has no third slice
    assert [len(b[1]) for b in batches] == [1, 1]
    assert len(reads) == 2


def stream_ddp(root: Path, devices: int) -> str:
    """The tiny streaming benchmark, kd only, on ``devices`` ranks (a worker each from 2)."""
    text = TINY_STREAM.format(root=root).replace("[losses.dist]\n", "")
    text = text.replace("workers = 0", f"workers = {devices - 1}")
    old = "[recipe]\nepochs = 2\nbatch_size = 6\n"
    assert old in text
    return text.replace(old, f"[recipe]\nepochs = 2\nbatch_size = {BATCH}\ndevices = {devices}\n")


@pytest.mark.slow
def test_two_gloo_ranks_on_an_image_folder_train_the_weights_of_one_process(
    folder: Path, tmp_path: Path
):
    records = []
    for devices in (1, 2):
        (tmp_path / str(devices)).mkdir()
        bench = tmp_path / str(devices) / "bench.toml"
        bench.write_text(stream_ddp(folder, devices))
        context, jobs = cell_jobs(bench, tmp_path / str(devices))
        kd = [job for job in jobs if job.cell.loss.label == "kd"]
        out = tmp_path / f"out{devices}"
        [record] = run_group(with_outputs(kd, out), context)
        assert record["status"] == "ok", record.get("error")
        records.append((out, record))
    (out1, one), (out2, two) = records
    assert two["protocol"]["distributed"]["world_size"] == 2
    assert one["cost"]["steps"] == two["cost"]["steps"]
    first, second = weights(out1, one), weights(out2, two)
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=1e-4, atol=1e-5)
    assert one["metrics"]["top1"] == two["metrics"]["top1"]
