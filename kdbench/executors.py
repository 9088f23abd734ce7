"""What an executor plugin may use, and what every executor promises.

An executor class is built with its TOML parameters (``[executor] params = {...}``) and
has ``map(units, run)``, yielding ``run(unit)`` for each unit as soon as it ends, in any
order. A unit is one :class:`CellJob`, whose result is a record, or, with
``[executor] lockstep = true`` (the default), a lockstep group: a list of jobs that
:func:`run_group` trains together, whose result is a list of records. The
runner takes a list of records for any unit. An executor that only passes units to
``run`` and yields what comes back needs to know neither; :func:`jobs_of` gives the jobs
of a unit to one that looks inside.

Executors that set ``in_process = True`` receive a ``run`` that shows progress and
reuses loaded datasets; others receive :func:`run_group` or
:func:`run_cell` itself, which pickles, and may call it as
``run(unit, context=...)`` with a context kept per worker.

Three optional methods let the runner drive an executor's lifetime, which may span
several ``map`` calls (retries run as further rounds):

- ``start(out_dir)``: once, before the first ``map``, with the results directory;
- ``cancel()``: on Ctrl-C or an error while cells run: stop submitted work now;
- ``close()``: once at the end, always: release workers, clusters, connections.

A unit whose job dies outside ``run`` (a killed worker, a cancelled cluster job) comes
back as one ``failed`` record per cell, made by :func:`failed_records`, so the runner
can retry those cells and the matrix goes on.
- ``job_states(out_dir, params)`` (a static method): the jobs an earlier run left
  submitted, for ``kdbench status``; each a dict with ``job_id``, ``state``,
  ``cell_ids`` and ``labels`` (``params``: those the run built the executor with, which
  ``kdbench run`` notes in the results folder, so status needs no benchmark file).

This module is the executors' public API: the built-in executors import nothing else
of kdbench's internals, and a third-party executor can do all they do. The unit
functions and the context load the engine on first use, so importing this module
(and loading plugins) pulls in no training code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kdbench.core.errors import KdbenchError
from kdbench.core.threads import default_threads, resolve_threads, set_threads, usable_cores
from kdbench.engine.job import CellJob, error_of, record_head
from kdbench.records.store import write_json_atomic

if TYPE_CHECKING:
    from kdbench.engine.cell import run_cell, run_group
    from kdbench.engine.context import RunContext
    from kdbench.engine.distributed import devices_of, exit_with_parent

# Loaded on first use: the engine's cell imports the plugin manager, which loads executors.
_ENGINE = {
    "run_cell": "kdbench.engine.cell",
    "run_group": "kdbench.engine.cell",
    "RunContext": "kdbench.engine.context",
    # multi-device units: how many ranks a unit asks for; a worker that dies with its parent
    "devices_of": "kdbench.engine.distributed",
    "exit_with_parent": "kdbench.engine.distributed",
}


def _engine(name: str) -> Any:
    return getattr(importlib.import_module(_ENGINE[name]), name)


def __getattr__(name: str) -> Any:
    if name not in _ENGINE:
        raise AttributeError(f"module 'kdbench.executors' has no attribute {name!r}")
    return _engine(name)


Result = dict[str, Any] | list[dict[str, Any]]  # what run(unit) answers: record or records

_WORKER_CONTEXT = None  # one RunContext per worker process: datasets load once per worker


def worker_context() -> RunContext:
    """This process's RunContext, made on first use and kept (plugins and datasets cached)."""
    global _WORKER_CONTEXT
    if _WORKER_CONTEXT is None:
        _WORKER_CONTEXT = _engine("RunContext")()
    return _WORKER_CONTEXT


def jobs_of(unit: Any) -> list[Any]:
    """The jobs of a unit: a lockstep group is a list of jobs; anything else is one job."""
    return unit if isinstance(unit, list) else [unit]


def failed_record(job: Any, exc: BaseException | str, *, where: str) -> dict[str, Any]:
    """A ``failed`` record for a cell whose job died before :func:`run_cell` could answer."""
    if isinstance(exc, BaseException):
        error = error_of(exc, prefix=f"{where}: ")
    else:
        error = {"type": "ExecutorError", "message": f"{where}: {exc}", "traceback": ""}
    head = record_head(job)
    return head | {"finished_at": head["started_at"], "status": "failed", "error": error}


def failed_records(unit: Any, exc: BaseException | str, *, where: str) -> list[dict[str, Any]]:
    """A ``failed`` record for every cell of a unit that died: a group's cells all die."""
    return [failed_record(job, exc, where=where) for job in jobs_of(unit)]


def positive(name: str, value: Any, executor: str) -> int | None:
    """An executor parameter that must be a positive integer when given (e.g. ``threads``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KdbenchError(
            f"executor '{executor}': {name} must be a positive integer, not {value!r}"
        )
    return value


__all__ = [
    "CellJob",
    "KdbenchError",
    "Result",
    "RunContext",
    "default_threads",
    "devices_of",
    "error_of",
    "exit_with_parent",
    "failed_record",
    "failed_records",
    "jobs_of",
    "positive",
    "record_head",
    "resolve_threads",
    "run_cell",
    "run_group",
    "set_threads",
    "usable_cores",
    "worker_context",
    "write_json_atomic",
]
