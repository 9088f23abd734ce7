"""``kdbench status``: how far a results directory is, from its records alone.

Done and failed counts come from the records; pending needs the benchmark's cells: the
ones the run noted (:mod:`kdbench.records.plan_note`) while the ``benchmark.toml`` it
copied into the directory is unchanged, else planned from the benchmark file. Record
files no reader may use are counted as quarantined:
those still in ``records/`` are moved by the next ``kdbench run``, which reruns their
cells; status itself moves nothing. Jobs a run left submitted are listed as its executor
describes its own (``job_states``): Slurm's from the job list it keeps in its folder,
with their state when ``squeue`` can tell. Which executor that was, the run noted in the
folder (:mod:`kdbench.records.executor_note`), so no benchmark file is needed for it.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.core.config import BenchmarkInfo, Tune, read_benchmark
from kdbench.core.errors import ConfigError, KdbenchError
from kdbench.records.executor_note import ExecutorNote, read_executor_note
from kdbench.records.logit_folder import store_size
from kdbench.records.plan_note import read_plan_note
from kdbench.records.schema import dump
from kdbench.records.store import BadRecord, RecordStore
from kdbench.records.tuned import trial_counts

if TYPE_CHECKING:
    from kdbench.engine.context import RunContext


@dataclass
class Status:
    out_dir: Path
    benchmark: Path | None
    cells: int | None = None  # None when no benchmark file could be read
    done: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    other_records: int = 0  # records of cells the benchmark no longer has
    unusable: list[BadRecord] = field(default_factory=list)  # the next run moves them
    quarantined: list[BadRecord] = field(default_factory=list)  # moved by earlier runs
    jobs: list[dict[str, Any]] = field(default_factory=list)
    executor: str | None = None  # the executor the last run noted, when it noted one
    logits: tuple[int, int] = (0, 0)  # the teacher-logit store: arrays, bytes
    # a tuned benchmark's trial records by status (ok, pruned, failed), and how many its
    # budget allows at most (None: not a tuned benchmark, or no file to read it from)
    trials: dict[str, int] = field(default_factory=dict)
    trial_budget: int | None = None


def status(
    out_dir: Path, file: Path | None = None, context: Callable[[], RunContext] | None = None
) -> Status:
    """Count done / failed / pending cells of ``out_dir`` and list submitted jobs.

    ``context`` makes the run context, called only when there is a benchmark to plan or
    the noted executor is a plugin's: from the records alone, status loads neither the
    plugins nor torch.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise KdbenchError(f"no results directory {out_dir}")
    benchmark = file or out_dir / "benchmark.toml"
    if file is None and not benchmark.is_file():
        benchmark = None
    store = RecordStore(out_dir)
    valid, bad = store.scan()
    records = {cell_id: dump(record) for cell_id, record in valid.items()}
    note = read_executor_note(out_dir)
    result = Status(out_dir, benchmark, unusable=bad, quarantined=store.quarantined())
    result.executor = note.name if note else None
    result.logits = store_size(out_dir)
    run_context = None
    jobs: list[dict[str, Any]] = []
    # the cells the run planned from this very file: no plugins to load, no torch
    noted = read_plan_note(out_dir, benchmark) if benchmark and file is None else None
    if benchmark is None:
        cells = None
    elif noted is not None:
        cells = noted
        result.cells = len(cells)
    else:
        from kdbench.engine.runner import plan

        run_context = _make_context(context)
        try:
            the_plan = plan(benchmark, run_context)
        except ConfigError as exc:
            hint = "" if file else " (pass the original benchmark FILE to count pending cells)"
            raise KdbenchError(f"{exc}{hint}") from None
        cells = {cell.id: cell.label() for cell in the_plan.cells}
        result.cells = len(cells)
        if note is None:  # a folder of an older run: ask every executor that can tell
            jobs = _every_executors_jobs(the_plan.config.executor, run_context, out_dir)
    if note is not None:
        jobs = _noted_jobs(note, out_dir, lambda: run_context or _make_context(context))
    done = {cell_id for cell_id, record in records.items() if record.get("status") == "ok"}
    result.jobs = [job for job in jobs if not done.issuperset(job["cell_ids"])]
    # a tuned benchmark: trials count apart; a final record fills its published cell's
    # slot, or, where the published settings run too ([tune] published), a slot beside it
    result.trials = trial_counts(valid.values())
    slots: set[str] = set()  # published cells with a final record, ok or failed
    raw = _raw_benchmark(benchmark) if benchmark is not None else {}
    tune = raw.get("tune") if isinstance(raw.get("tune"), dict) else None
    beside = tune is not None and tune.get("published") is True
    if tune is not None and cells is not None:
        result.trial_budget = trial_budget(raw, len(cells))
        if beside:
            cells = cells | {_final_slot(i): f"{label} (tuned)" for i, label in cells.items()}
            result.cells = len(cells)
    for cell_id, record in records.items():
        phase = record["config"].get("phase")
        if phase == "trial":
            continue
        if phase == "final":
            cell_id = record["config"]["tune"].get("published_cell", cell_id)
            cell_id = _final_slot(cell_id) if beside else cell_id
            slots.add(cell_id)
        if cells is not None and cell_id not in cells:
            result.other_records += 1
        elif record.get("status") == "ok":
            result.done += 1
        else:
            result.failed.append(record)
    if cells is not None:
        result.pending = [
            label
            for cell_id, label in cells.items()
            if cell_id not in records and cell_id not in slots
        ]
    return result


def _final_slot(cell_id: str) -> str:
    return f"final:{cell_id}"


def _raw_benchmark(benchmark: Path) -> dict[str, Any]:
    """The benchmark file's tables as written (empty when it cannot be read)."""
    try:
        return read_benchmark(benchmark)
    except ConfigError:
        return {}


def trial_budget(raw: dict[str, Any], cells: int) -> int | None:
    """The most trials a tuned benchmark (its tables as written) runs: ``[tune] trials``
    for each method (each group of one method's seeds); a grid or a method with nothing
    to search runs fewer."""
    tune, info = raw.get("tune"), raw.get("benchmark")
    if not isinstance(tune, dict) or not isinstance(info, dict):
        return None
    seeds = info.get("seeds", BenchmarkInfo.model_fields["seeds"].default)
    trials = tune.get("trials", Tune.model_fields["trials"].default)
    if not isinstance(seeds, list) or not seeds or not isinstance(trials, int):
        return None
    return trials * (cells // len(seeds))


def _make_context(context: Callable[[], RunContext] | None) -> RunContext:
    from kdbench.engine.context import RunContext

    return (context or RunContext)()


def _noted_jobs(
    note: ExecutorNote, out_dir: Path, context: Callable[[], RunContext]
) -> list[dict[str, Any]]:
    """The jobs of the executor the run noted, asked with the parameters it ran with.

    Nothing is imported for an executor that describes no jobs; one of kdbench's own is
    imported alone; any other is found by name among the loaded plugins (which may be
    slow: they may import torch).
    """
    if not note.describes_jobs:
        return []
    describe = None
    module, _, qualname = note.cls.partition(":")
    if module.startswith("kdbench."):
        with contextlib.suppress(ImportError, AttributeError):
            found: Any = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
            describe = getattr(found, "job_states", None)
    if describe is None:
        entries = context().plugins.registry.entries("executors")
        named = [entry.obj for entry in entries if entry.name == note.name]
        describe = getattr(named[0], "job_states", None) if named else None
    return describe(out_dir, dict(note.params)) if describe else []


def _every_executors_jobs(
    executor: Any, context: RunContext, out_dir: Path
) -> list[dict[str, Any]]:
    """Submitted jobs as every executor that can describes its own (no note to go by).

    Every registered executor with a ``job_states`` method is asked (a run may have
    overridden the file's executor); the file's own gets its ``[executor] params``.
    """
    jobs = []
    for entry in context.plugins.registry.entries("executors"):
        describe = getattr(entry.obj, "job_states", None)
        if describe is not None:
            params = dict(executor.params) if entry.name == executor.name else {}
            jobs += describe(out_dir, params)
    return jobs
