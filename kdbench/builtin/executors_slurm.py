"""The ``slurm`` executor: each unit (a cell or a lockstep group) is one task of a Slurm
job array, through submitit.

submitit pickles every job into ``folder`` and the compute node unpickles it from
there, so ``folder`` and the results directory must be on a filesystem that this
machine and the compute nodes share. Records are written by the ``kdbench run``
process as results come back; each job checks first that it can reach the results
directory, so a directory the nodes cannot see stops the run with a clear message
instead of training the whole matrix for nothing.

``cluster = "local"`` runs the very same pickles and job files as local processes
(submitit's LocalExecutor), which is how the tests exercise this module.

A unit whose recipe asks for ``devices = N > 1`` is a job of its own with N tasks, one
rank each (one GPU per task): on one node (``tasks_per_node = gpus_per_node = N``), or,
when the executor's ``gpus_per_node`` is smaller, on ``N / gpus_per_node`` nodes. Each
task joins the job's process group through submitit's ``TorchDistributedEnvironment``;
task 0's records come back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdbench import hookimpl
from kdbench.executors import (
    KdbenchError,
    Result,
    failed_records,
    jobs_of,
    positive,
    resolve_threads,
    set_threads,
    worker_context,
    write_json_atomic,
)

INSTALL_HINT = "the slurm executor needs submitit: pip install 'kdbench[slurm]'"
JOBS_FILE = "kdbench-jobs.json"  # job id -> its cells, for `kdbench status`
_UNREACHABLE = "ResultsDirUnreachable"


class ResultsDirUnreachable(KdbenchError):
    """A job cannot see or write the results directory (it is not on a shared filesystem)."""


def _devices(unit: Any) -> int:
    """The ranks a unit asks for; the multi-device code (and torch) loads on first use,
    so ``kdbench status`` can import this module to ask for its jobs."""
    from kdbench.executors import devices_of

    return devices_of(jobs_of(unit))


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise KdbenchError(INSTALL_HINT) from None
    return submitit


def check_results_dir(out_dir: str) -> None:
    """Raise :class:`ResultsDirUnreachable` unless ``out_dir`` exists here and is writable."""
    host = socket.gethostname()
    if not os.path.isdir(out_dir):
        raise ResultsDirUnreachable(
            f"results directory {out_dir} does not exist on {host}: put --out (and the "
            "executor's folder) on a filesystem shared by the submitting machine and the nodes"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".kdbench-probe-"):
            pass
    except OSError as exc:
        raise ResultsDirUnreachable(
            f"results directory {out_dir} is not writable on {host} ({exc}): it must be on a "
            "shared filesystem writable from the nodes"
        ) from None


def run_slurm_cell(
    run: Callable[..., Result], unit: Any, out_dir: str, threads: int | None
) -> Result:
    """The job body: check the shared results directory, set the threads, run the unit.

    Without a thread count the task takes the cores Slurm gave it (its affinity mask).
    """
    check_results_dir(out_dir)
    set_threads(resolve_threads(threads))
    if _devices(unit) > 1:  # this task is one rank: RANK, WORLD_SIZE, MASTER_*
        _import_submitit().helpers.TorchDistributedEnvironment().export(
            set_cuda_visible_devices=False
        )
    return run(unit, context=worker_context())


class CellTask:
    """The job submitit runs: :func:`run_slurm_cell`, requeued when preempted or timed out.

    Slurm signals a job before its time limit and when it is preempted; submitit then
    calls :meth:`checkpoint`, which submits the same task again. What makes the requeued
    job go on from its last epoch, not from the start, is the checkpoint the cell saves
    beside the records every ``[run] checkpoint_every`` epochs.
    """

    def __call__(
        self, run: Callable[..., Result], unit: Any, out_dir: str, threads: int | None
    ) -> Result:
        return run_slurm_cell(run, unit, out_dir, threads)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The same task with the same arguments, for submitit to requeue."""
        return _import_submitit().helpers.DelayedSubmission(self, *args, **kwargs)


class SlurmExecutor:
    """Submit units as a Slurm job array with submitit; records stream back as tasks end.

    ``time`` is the limit per task (one cell, or a whole lockstep group) in minutes.
    ``setup`` lines run in the job's shell before Python starts (``module load``,
    ``source venv/bin/activate``). ``extra`` passes further submitit parameters
    (``slurm_account``, ``slurm_qos``, ...). ``threads`` per task defaults to
    ``cpus_per_task``, else to the user's ``OMP_NUM_THREADS``, else to the task's cores
    on a node, and on this machine (the local fallback) to the usable cores divided by
    the tasks run at once.
    """

    in_process = False

    def __init__(
        self,
        partition: str | None = None,
        time: int = 60,
        gpus_per_node: int | None = None,
        cpus_per_task: int | None = None,
        mem_gb: float | None = None,
        array_parallelism: int | None = None,
        setup: list[str] | None = None,
        folder: str | None = None,
        cluster: str | None = None,
        poll_s: float | None = None,
        extra: dict[str, Any] | None = None,
        threads: int | None = None,
    ) -> None:
        self.threads = positive("threads", threads, "slurm")
        self.partition = partition
        self.time = time
        self.gpus_per_node = gpus_per_node
        self.cpus_per_task = cpus_per_task
        self.mem_gb = mem_gb
        self.array_parallelism = array_parallelism
        self.setup = list(setup or [])
        self.folder = folder
        self.cluster = cluster
        self.poll_s = poll_s
        self.extra = dict(extra or {})
        if cluster not in (None, "slurm", "local", "debug"):
            raise KdbenchError(
                f"executor 'slurm': cluster must be 'slurm', 'local' or 'debug', not {cluster!r}"
            )
        self._executor: Any = None
        self._out_dir: Path | None = None
        self._jobs_file: Path | None = None
        self._running: dict[str, tuple[Any, Any]] = {}
        self._since: dict[str, str] = {}  # job id -> when it was submitted

    @staticmethod
    def job_states(out_dir: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Jobs a run left submitted from ``out_dir`` (the ``folder`` param, else its slurm/)."""
        folder = params.get("folder")
        return job_states(Path(folder).expanduser() if folder else Path(out_dir) / "slurm")

    def start(self, out_dir: Path) -> None:
        """Make the submitit executor; check that the folders can be written from here."""
        submitit = _import_submitit()
        self._out_dir = Path(out_dir).resolve()
        folder = Path(self.folder).expanduser() if self.folder else self._out_dir / "slurm"
        folder = folder.resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            check_results_dir(str(self._out_dir))
            check_results_dir(str(folder))
        except (OSError, ResultsDirUnreachable) as exc:
            raise KdbenchError(f"slurm executor: {exc}") from None
        try:
            self._executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        except RuntimeError as exc:  # cluster = "slurm" where there is no Slurm
            raise KdbenchError(
                f"slurm executor: {exc} (run kdbench on a Slurm login node, or set "
                "cluster = 'local' to try the jobs on this machine)"
            ) from None
        if self.cluster is None and self._executor.cluster != "slurm":
            warnings.warn(
                f"kdbench: no Slurm found (srun): the slurm executor runs the jobs as "
                f"{self._executor.cluster} processes on this machine",
                stacklevel=2,
            )
        self._jobs_file = folder / JOBS_FILE
        self._executor.update_parameters(**self._parameters())

    def _parameters(self) -> dict[str, Any]:
        """Generic submitit parameters plus the Slurm-only ones (ignored by other clusters)."""
        cluster = self._executor.cluster
        params: dict[str, Any] = {"name": "kdbench", "timeout_min": self.time}
        for key in ("gpus_per_node", "cpus_per_task", "mem_gb"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        if cluster == "slurm":
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.array_parallelism:
                params["slurm_array_parallelism"] = self.array_parallelism
            if self.setup:
                params["slurm_setup"] = self.setup
        elif cluster == "local" and self.setup:
            params["local_setup"] = self.setup
        return params | self.extra

    @property
    def _limit(self) -> int | None:
        """Tasks in flight at once: Slurm throttles arrays itself; local processes are ours."""
        if self._executor.cluster == "slurm":
            return None
        return self.array_parallelism or 1

    def map(self, units: Iterable[Any], run: Callable[..., Result]) -> Iterator[Result]:
        if self._executor is None:
            raise KdbenchError("slurm executor used before start(out_dir)")
        submitit = _import_submitit()
        queue = list(units)
        poll = self.poll_s or (10.0 if self._executor.cluster == "slurm" else 0.5)
        while queue or self._running:
            room = len(queue) if self._limit is None else self._limit - len(self._running)
            if queue and room > 0:
                self._submit(queue[:room], run)
                del queue[:room]
            for handle in submitit.helpers.as_completed(
                [job for job, _ in self._running.values()], poll_frequency=poll
            ):
                yield self._collect(handle)
                if queue:
                    break  # a slot is free: submit more before waiting again

    def _submit(self, units: list[Any], run: Callable[..., Result]) -> None:
        threads = self.threads or self.cpus_per_task
        if not threads and self._executor.cluster != "slurm":  # tasks share this machine
            threads = resolve_threads(workers=self._limit or 1)
        out_dir = str(self._out_dir)
        spread = [unit for unit in units if _devices(unit) > 1]
        units = [unit for unit in units if _devices(unit) == 1]
        handles = []
        if units:
            handles = self._executor.map_array(
                CellTask(),
                [run] * len(units),
                units,
                [out_dir] * len(units),
                [threads] * len(units),
            )
        for unit in spread:  # a job of N tasks each, one rank per task
            executor = self._spread_executor(_devices(unit))
            handles.append(executor.submit(CellTask(), run, unit, out_dir, threads))
            units.append(unit)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for handle, unit in zip(handles, units, strict=True):
            self._running[handle.job_id] = (handle, unit)
            self._since[handle.job_id] = now
        self._write_jobs_file()

    def _spread_executor(self, devices: int) -> Any:
        """A submitit executor for jobs of ``devices`` tasks, one GPU each on Slurm."""
        per_node = min(self.gpus_per_node or devices, devices)
        if devices % per_node:
            raise KdbenchError(
                f"executor 'slurm': devices = {devices} does not fill nodes of "
                f"gpus_per_node = {per_node}"
            )
        executor = _import_submitit().AutoExecutor(
            folder=self._executor.folder, cluster=self._executor.cluster
        )
        spread = {"nodes": devices // per_node, "tasks_per_node": per_node}
        if self._executor.cluster == "slurm":
            spread["gpus_per_node"] = per_node
        executor.update_parameters(**(self._parameters() | spread))
        return executor

    def _collect(self, handle: Any) -> list[dict[str, Any]]:
        """The records of a finished task, each naming its job (a group's share one)."""
        _, unit = self._running.pop(handle.job_id)
        self._write_jobs_file()
        try:
            result = handle.results()[0]  # task 0's: a multi-device job has one per rank
        except Exception as exc:  # noqa: BLE001 - a lost job fails its cells; retries may help
            if _UNREACHABLE in str(exc):
                self.cancel()
                message = str(exc).split(f"{_UNREACHABLE}: ", 1)[-1].strip().splitlines()[0]
                raise KdbenchError(f"slurm job {handle.job_id}: {message}") from None
            result = failed_records(unit, exc, where=f"slurm job {handle.job_id}")
        records = result if isinstance(result, list) else [result]
        for record in records:
            record["slurm_job_id"] = handle.job_id
        return records

    def _write_jobs_file(self) -> None:
        if self._jobs_file is None:
            return
        jobs = {
            job_id: {
                "cell_ids": [job.cell.id for job in jobs_of(unit)],
                "labels": [job.cell.label() for job in jobs_of(unit)],
                "cluster": self._executor.cluster,
                "since": self._since[job_id],
            }
            for job_id, (_, unit) in self._running.items()
        }
        write_json_atomic(self._jobs_file, jobs)

    def cancel(self) -> None:
        """scancel every job still queued or running (local: interrupt its process)."""
        for handle, _ in list(self._running.values()):
            with contextlib.suppress(Exception):  # best effort: cancel the rest regardless
                handle.cancel(check=False)
        self._running.clear()
        self._write_jobs_file()

    def close(self) -> None:
        if self._running:
            self.cancel()


def job_states(folder: Path) -> list[dict[str, Any]]:
    """Jobs the last ``kdbench run`` left submitted, with their state where it can be had.

    Each job lists its ``cell_ids`` and ``labels``: one cell, or a lockstep group's cells.
    """
    path = folder / JOBS_FILE
    if not path.is_file():
        return []
    jobs = json.loads(path.read_text(encoding="utf-8"))
    slurm_ids = [job_id for job_id, info in jobs.items() if info.get("cluster") == "slurm"]
    states = _squeue(slurm_ids)
    rows = []
    for job_id, info in jobs.items():
        if "cell_id" in info:  # an older kdbench wrote one cell per job
            info = {"cell_ids": [info.pop("cell_id")], "labels": [info.pop("label", "")], **info}
        finished = (folder / f"{job_id}_0_result.pkl").is_file()
        if info.get("cluster") == "slurm":
            state = states.get(job_id, "finished" if finished else "not in squeue")
        else:
            state = "finished" if finished else _local_state(job_id)
        rows.append({"job_id": job_id, "state": state, **info})
    return rows


def _squeue(job_ids: list[str]) -> dict[str, str]:
    if not job_ids or shutil.which("squeue") is None:
        return {}
    done = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return dict(line.split(maxsplit=1) for line in done.stdout.splitlines() if " " in line)


def _local_state(job_id: str) -> str:
    """A local job's id is its controller's pid."""
    try:
        os.kill(int(job_id.split("_")[0]), 0)
    except (ValueError, ProcessLookupError):
        return "gone"
    except PermissionError:
        pass
    return "RUNNING"


@hookimpl
def register_executors(register):
    register("slurm", SlurmExecutor)
