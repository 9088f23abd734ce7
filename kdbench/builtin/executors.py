"""The ``local`` and ``pool`` executors (what every executor promises: :mod:`kdbench.executors`)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from kdbench import hookimpl
from kdbench.executors import (
    Result,
    exit_with_parent,
    failed_records,
    jobs_of,
    positive,
    resolve_threads,
    set_threads,
    usable_cores,
    worker_context,
)


class LocalExecutor:
    """Run cells sequentially in this process (the default), with ``threads`` torch threads.

    ``threads`` defaults to the user's ``OMP_NUM_THREADS``, else the usable cores (see
    :mod:`kdbench.core.threads`).
    """

    in_process = True

    def __init__(self, threads: int | None = None) -> None:
        self.threads = positive("threads", threads, "local")
        self._saved_threads: int | None = None

    def start(self, out_dir: Any) -> None:
        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(resolve_threads(self.threads))

    def close(self) -> None:
        if self._saved_threads:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def map(self, units: Iterable[Any], run: Callable[[Any], Result]) -> Iterator[Result]:
        for unit in units:
            yield run(unit)


def _visible_gpus() -> list[str]:
    """GPU ids as this process sees them, in the terms CUDA_VISIBLE_DEVICES takes."""
    count = torch.cuda.device_count()
    if count == 0:
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        ids = [part.strip() for part in listed.split(",") if part.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def _wants_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def _init_worker(gpu: str | None, threads: int) -> None:
    """Pin a fresh worker to its GPU and thread count, then load plugins once."""
    # Ctrl-C reaches the whole process group; the parent alone decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        torch.cuda.set_device(0)
    set_threads(threads)
    exit_with_parent()  # a worker whose parent was killed would wait for work forever
    worker_context()


def _run_in_worker(run: Callable[..., Result], unit: Any) -> Result:
    return run(unit, context=worker_context())


class PoolExecutor:
    """Worker processes on this machine: one per visible GPU, or N CPU workers.

    Each worker is a fresh (spawned) process pinned to its GPU and to ``threads`` torch
    threads (default: the user's ``OMP_NUM_THREADS``, else usable cores // workers), and
    keeps its datasets loaded between cells. Each worker is its own single-process pool,
    so a worker that dies takes only its own unit (a cell or a lockstep group) with it
    and is replaced.
    """

    in_process = False

    def __init__(self, workers: int | None = None, threads: int | None = None) -> None:
        self.workers = positive("workers", workers, "pool")
        self.threads = positive("threads", threads, "pool")
        self._pools: list[ProcessPoolExecutor | None] = []
        self._slots: list[tuple[str | None, int]] = []

    def _layout(self, units: list[Any]) -> list[tuple[str | None, int]]:
        """(GPU, threads) per worker: GPUs round-robin when cells run on CUDA."""
        on_cuda = any(_wants_cuda(str(job.device)) for unit in units for job in jobs_of(unit))
        gpus = _visible_gpus() if on_cuda else []
        workers = self.workers or len(gpus) or usable_cores()
        threads = resolve_threads(self.threads, workers=workers)
        return [(gpus[i % len(gpus)] if gpus else None, threads) for i in range(workers)]

    def _pool(self, slot: int) -> ProcessPoolExecutor:
        pool = self._pools[slot]
        if pool is None:
            gpu, threads = self._slots[slot]
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(gpu, threads),
            )
            self._pools[slot] = pool
        return pool

    def map(self, units: Iterable[Any], run: Callable[..., Result]) -> Iterator[Result]:
        queue = list(units)
        if not queue:
            return
        if not self._slots:
            self._slots = self._layout(queue)
            self._pools = [None] * len(self._slots)
        queue.reverse()  # pop() from the end keeps the runner's order
        running: dict[Future, tuple[int, Any]] = {}
        idle = list(range(len(self._slots)))
        while queue or running:
            while queue and idle:
                slot, unit = idle.pop(0), queue.pop()
                running[self._pool(slot).submit(_run_in_worker, run, unit)] = (slot, unit)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                slot, unit = running.pop(future)
                idle.append(slot)
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a dead worker fails its unit only
                    self._discard(slot)
                    result = failed_records(unit, exc, where=f"pool worker {slot}")
                yield result

    def _discard(self, slot: int) -> None:
        pool, self._pools[slot] = self._pools[slot], None
        if pool is not None:
            _stop(pool)

    def cancel(self) -> None:
        for slot in range(len(self._pools)):
            self._discard(slot)

    def close(self) -> None:
        for slot, pool in enumerate(self._pools):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                self._pools[slot] = None


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now, running cells included (Python 3.11 has no public way to)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


@hookimpl
def register_executors(register):
    register("local", LocalExecutor)
    register("pool", PoolExecutor)
