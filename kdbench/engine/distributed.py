"""Cells on several devices: N processes, a shard of every batch each, one set of records.

A cell (or lockstep group) whose recipe asks for ``devices = N > 1`` is trained by N
processes with torchrun's semantics: :func:`launch_group` starts them through torch's
elastic launcher (the machinery behind ``torchrun``), or, when this process already is
one rank of a launched job (``RANK``/``WORLD_SIZE`` set by torchrun, or by the Slurm
executor's tasks), joins that job's process group instead. NCCL on CUDA, one device per
rank (``cuda:LOCAL_RANK``); gloo on the CPU, the CPU threads split between the ranks.

What stays the experiment of one process:

- **Data**: every rank runs the same seeded batch stream (same order,
  same augmentation draws) and keeps its slice of each global batch (``batch_size`` is
  the global batch), so a step is the single-process step.
- **Gradients**: each rank's gradient (of its shard's batch-mean loss) is weighted by its
  share of the global batch and summed over the ranks, student and loss parameters
  (FitNets regressors, CRD heads) in one all-reduce before each optimizer step: the
  gradient of the global batch mean even when a batch does not split evenly.
- **BatchNorm**: ``sync_bn = true`` (the default) uses SyncBatchNorm, i.e. the global
  batch's statistics, on CUDA; torch has none on the CPU. Without it each rank normalises
  with its shard's statistics (results differ from one process); the running statistics
  are averaged over the ranks after every step, so every rank holds the same model.
- **Loss state**: CRD gathers every rank's indices and embeddings, so each rank's memory
  bank equals the single-process one (:func:`gather_rows`).

Every rank evaluates the whole test split with identical weights; rank 0's results make
the records and rank 0 alone writes checkpoints (read by every rank on restart). A rank
that raises stops the launch: the others are torn down and every cell of the unit is
recorded as failed with that rank's error (so one failing student fails its group).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from kdbench.core.errors import KdbenchError
from kdbench.engine.batches import Batch, SeededBatches

__all__ = ["RankError", "World", "devices_of", "gather_rows", "launch_group", "spread"]

# A collective that waits longer than this raises instead of hanging (a rank died).
TIMEOUT = timedelta(minutes=int(os.environ.get("KDBENCH_DIST_TIMEOUT_MIN", "30")))


# Validation refuses it too (an amp = "auto" that picks fp16 on the GPU fails here).
NO_FP16 = (
    "is not supported with devices > 1 (each rank's gradient scaler would skip steps on "
    'its own overflows); use amp = "bf16" or "off"'
)


class RankError(RuntimeError):
    """A rank of a multi-device cell raised: its error, named with the rank."""


def devices_of(jobs: list[Any]) -> int:
    """The number of processes a unit of jobs asks for (``[recipe] devices``)."""
    return int(jobs[0].cell.recipe.get("devices", 1))


@dataclass
class World:
    """This process's place in a multi-device cell, and the per-step bookkeeping."""

    rank: int
    size: int
    backend: str
    device: torch.device  # where collectives' tensors live (NCCL takes only CUDA ones)
    sync_bn: bool = False
    share: float = 1.0  # this rank's fraction of the current global batch
    runs: list[Any] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """What a record says about how its cell was spread."""
        return {
            "world_size": self.size,
            "backend": self.backend,
            "sync_bn": self.sync_bn,
            "gradients": "shard-weighted sum over ranks (global batch mean)",
            "evaluation": "whole test split on every rank; rank 0's figures recorded",
        }

    def shard(self, stream: SeededBatches) -> ShardedStream:
        return ShardedStream(stream, self)

    def prepare(self, runs: list[Any], want_sync_bn: bool) -> None:
        """Make the runs train as one: same start, synced BatchNorm, reduced gradients."""
        self.sync_bn = want_sync_bn and self.backend == "nccl"
        for run in runs:
            if run.scaler is not None:
                raise KdbenchError(f"recipe: amp = fp16 {NO_FP16}")
            if self.sync_bn:
                nn.SyncBatchNorm.convert_sync_batchnorm(run.model)
            run.fail_fast = True
            for tensor in [*run.model.state_dict().values(), *run.loss.state_dict().values()]:
                dist.broadcast(tensor, 0)  # in place: every rank starts from rank 0's state
            run.optimizer.register_step_pre_hook(self._reduce_hook(run.model))
        self.runs = runs

    def _reduce_hook(self, model: nn.Module) -> Callable[..., None]:
        def reduce(optimizer: torch.optim.Optimizer, *_: Any) -> None:
            grads = [
                p.grad for group in optimizer.param_groups for p in group["params"]
                if p.grad is not None
            ]  # fmt: skip
            _all_reduce_in_place(grads, scale=self.share)
            stats = [b for b in model.buffers() if b.is_floating_point()]
            _all_reduce_in_place(stats, scale=1.0 / self.size)

        return reduce

    def epoch_end(self, end: Callable[[int, float], None] | None) -> Callable[[int, float], None]:
        """Average the epoch's loss terms over the ranks; rank 0 alone saves checkpoints."""

        def at_end(epoch: int, seconds: float) -> None:
            for run in self.runs:
                if run.error is not None:  # diverged here: stop every rank, not just this one
                    raise run.error
                terms = run.history[-1]["train"]
                values = torch.tensor(list(terms.values()), dtype=torch.float64, device=self.device)
                dist.all_reduce(values)
                terms.update(zip(terms, (values / self.size).tolist(), strict=True))
            if end is not None and self.rank == 0:
                end(epoch, seconds)

        return at_end


def _all_reduce_in_place(tensors: list[torch.Tensor], *, scale: float) -> None:
    """Scale, sum over the ranks in one collective, write back."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors]).mul_(scale)
    dist.all_reduce(flat)
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        t.copy_(part.view_as(t))


class ShardedStream:
    """A rank's view of a stream: its slice of every global batch (:func:`batch_part`).

    Slices differ in size by at most one image; a last batch with fewer images than
    ranks is dropped (a rank with no image cannot take part in the step). Each rank sets
    its share of the batch, which weights its gradient. An in-memory stream slices the
    batch it drew; a streaming one reads and decodes only this rank's files.
    """

    def __init__(self, stream: SeededBatches, world: World) -> None:
        self.stream, self.world = stream, world

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __len__(self) -> int:
        full, rest = divmod(len(self.stream.split), self.stream.batch_size)
        return full + (rest >= self.world.size)

    def epoch(self) -> Iterator[Batch]:
        for batch, share in self.stream.epoch_part(self.world.rank, self.world.size):
            self.world.share = share
            yield batch


def spread() -> bool:
    """Whether this process is one of several ranks of a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows, in rank order, and where this rank's start (no gradient).

    Ranks may hold different numbers of rows. In one process, the tensor itself and 0.
    """
    if not spread():
        return tensor, 0
    size = dist.get_world_size()
    counts = torch.zeros(size, dtype=torch.long, device=tensor.device)
    counts[dist.get_rank()] = len(tensor)
    dist.all_reduce(counts)
    most = int(counts.max())
    padded = tensor.new_zeros((most, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor.detach()
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    rows = torch.cat([part[: int(n)] for part, n in zip(parts, counts, strict=True)])
    return rows, int(counts[: dist.get_rank()].sum())


def launch_group(jobs: list[Any], threads: int | None = None) -> list[Any]:
    """Train a unit of jobs on ``devices`` processes; rank 0's results (body or error).

    Joins the job this process is a rank of (torchrun, Slurm tasks) or launches the
    ranks here. A rank that fails raises :class:`RankError` with its error.
    """
    size = devices_of(jobs)
    launched = _launched_size()
    if launched is not None:
        if launched != size:
            raise KdbenchError(
                f"recipe: devices = {size}, but this process was launched as one of "
                f"{launched} ranks (WORLD_SIZE)"
            )
        results = rank_main(jobs, None, watch_parent=False)
        if results is None:  # the records are rank 0's
            return [RankError("not rank 0: rank 0 makes the records")] * len(jobs)
        return results
    if _wants_cuda(jobs) and torch.cuda.device_count() < size:
        raise KdbenchError(
            f"recipe: devices = {size}, but this machine has {torch.cuda.device_count()} GPU(s) "
            "visible (CUDA_VISIBLE_DEVICES)"
        )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=size,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port: torchrun --standalone
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    threads = max(1, (threads or torch.get_num_threads()) // size)
    try:
        with _quiet_launcher():
            return elastic_launch(config, rank_main)(jobs, threads)[0]
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise RankError(f"rank {rank} of {size}: {_failure_message(failure)}") from None


def _failure_message(failure: Any) -> str:
    message = failure.message
    if isinstance(message, dict):
        return str(message.get("message", message))
    return str(message) or f"exit code {failure.exitcode}"


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher logs a failed rank's traceback; the record keeps the error instead."""
    logger = logging.getLogger("torch.distributed.elastic")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _wants_cuda(jobs: list[Any]) -> bool:
    return jobs[0].device != "cpu" and torch.cuda.is_available()


def _launched_size() -> int | None:
    """WORLD_SIZE when this process is a rank of a job launched by torchrun or Slurm."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    return None


def rank_main(jobs: list[Any], threads: int | None, watch_parent: bool = True) -> list | None:
    """One rank: join the process group, train the unit, return rank 0's results."""
    if watch_parent:  # a killed launcher must not leave ranks writing its checkpoints
        exit_with_parent()
    if threads:
        torch.set_num_threads(threads)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = _wants_cuda(jobs)
    gpu = local_rank % max(torch.cuda.device_count(), 1)  # a task may see only its own GPU
    if cuda:
        torch.cuda.set_device(gpu)
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        device = torch.device(f"cuda:{gpu}" if cuda else "cpu")
        here = World(dist.get_rank(), dist.get_world_size(), backend, device)
        from kdbench.engine.cell import _train_group
        from kdbench.engine.context import RunContext

        results = _train_group(jobs, RunContext(), device, None, here)
        if here.rank != 0:
            return None
        for result in results:
            if isinstance(result, dict):
                result["protocol"]["distributed"] = here.describe()
        return results
    finally:
        dist.destroy_process_group()


def exit_with_parent() -> None:
    """Exit this process once its parent is gone (SIGKILL, OOM): no orphan trains on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
