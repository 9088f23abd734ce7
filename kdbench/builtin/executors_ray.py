"""The ``ray`` executor: each unit (a cell or a lockstep group) is one Ray task, scheduled
by its CPU and GPU needs.

With ``address`` the executor joins a running cluster (``"auto"`` finds the one this
machine belongs to); without it, it uses the Ray instance this process already started
or starts a local one for the run. Records come back to the ``kdbench run`` process as
tasks finish and are written there, so on a cluster only that machine needs the
results directory. Every node needs the same Python environment with kdbench and the
plugins the benchmark uses installed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kdbench import hookimpl
from kdbench.executors import (
    KdbenchError,
    Result,
    devices_of,
    failed_records,
    jobs_of,
    positive,
    worker_context,
)

INSTALL_HINT = "the ray executor needs Ray: pip install 'kdbench[ray]'"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise KdbenchError(INSTALL_HINT) from None
    return ray


def run_ray_cell(run: Callable[..., Result], unit: Any, threads: int) -> Result:
    """The task body: as many torch threads as CPUs reserved, then the cell or group."""
    from kdbench.executors import set_threads

    set_threads(threads)
    return run(unit, context=worker_context())


class RayExecutor:
    """Run units as Ray tasks, each reserving its CPUs and GPUs, locally or on a cluster.

    ``num_gpus`` defaults to 1 when this machine or the cluster has a GPU, else 0.
    ``num_cpus`` / ``num_gpus`` are what each task (a cell or a lockstep group) reserves
    (fractions share a GPU).
    ``local_cpus`` sizes a Ray started here (default: all cores). ``threads`` per task
    defaults to ``num_cpus`` (whole CPUs, at least one).
    """

    in_process = False

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float | None = None,
        local_cpus: int | None = None,
        runtime_env: dict[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        self.threads = positive("threads", threads, "ray")
        if num_cpus <= 0:
            raise KdbenchError(f"executor 'ray': num_cpus must be positive, not {num_cpus!r}")
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.local_cpus = local_cpus
        self.runtime_env = runtime_env
        self._ray: Any = None
        self._started_here = False
        self._task: Any = None
        self._num_gpus: float = 0
        self._pending: dict[Any, Any] = {}

    def start(self, out_dir: Path) -> None:
        """Connect to (or start) Ray and declare the task with its resource needs."""
        ray = self._ray = _import_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"runtime_env": self.runtime_env} if self.runtime_env else {}
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(
                    num_cpus=self.local_cpus,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    **options,
                )
            self._started_here = True
        num_gpus = self.num_gpus
        if num_gpus is None:  # the head may have no GPU while the cluster's nodes do
            import torch

            has_gpu = torch.cuda.is_available() or ray.cluster_resources().get("GPU", 0) >= 1
            num_gpus = 1 if has_gpu else 0
        self._num_gpus = num_gpus
        self._task = self._spread(1)

    def _spread(self, devices: int) -> Any:
        """The task with the resources of ``devices`` ranks."""
        return self._ray.remote(run_ray_cell).options(
            num_cpus=self.num_cpus * devices, num_gpus=self._num_gpus * devices, max_retries=0
        )

    def map(self, units: Iterable[Any], run: Callable[..., Result]) -> Iterator[Result]:
        if self._task is None:
            raise KdbenchError("ray executor used before start(out_dir)")
        ray = self._ray
        threads = self.threads or max(1, int(self.num_cpus))
        run_ref = ray.put(run)
        for unit in units:
            devices = devices_of(jobs_of(unit))
            # a multi-device unit: one task reserves N shares and launches its N ranks there
            task = self._task if devices == 1 else self._spread(devices)
            self._pending[task.remote(run_ref, unit, threads * devices)] = unit
        while self._pending:
            done, _ = ray.wait(list(self._pending), num_returns=1)
            for ref in done:
                unit = self._pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    result = failed_records(unit, exc, where="ray task")
                yield result

    def cancel(self) -> None:
        """Cancel every task not yet finished (force: running ones are killed)."""
        if self._ray is None:
            return
        for ref in list(self._pending):
            with contextlib.suppress(Exception):  # best effort: cancel the rest regardless
                self._ray.cancel(ref, force=True)
        self._pending.clear()

    def close(self) -> None:
        if self._pending:
            self.cancel()
        if self._started_here and self._ray is not None:
            self._ray.shutdown()
            self._started_here = False


@hookimpl
def register_executors(register):
    register("ray", RayExecutor)
