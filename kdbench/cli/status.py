"""``kdbench status``: how far a results directory is, from its records alone.

Done and failed counts come from the records; pending needs the benchmark's cells, so
the benchmark file is read too (by default the ``benchmark.toml`` that ``kdbench run``
copies into the directory). Record files no reader may use are counted as quarantined:
those still in ``records/`` are moved by the next ``kdbench run``, which reruns their
cells; status itself moves nothing. Jobs the Slurm executor submitted are listed from the
job list it keeps in its folder, with their state when ``squeue`` can tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.core.errors import ConfigError, KdbenchError
from kdbench.engine.context import RunContext
from kdbench.records.schema import dump
from kdbench.records.store import BadRecord, RecordStore


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


def status(out_dir: Path, file: Path | None = None, context: RunContext | None = None) -> Status:
    """Count done / failed / pending cells of ``out_dir`` and list submitted jobs."""
    from kdbench.engine.runner import plan

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise KdbenchError(f"no results directory {out_dir}")
    benchmark = file or out_dir / "benchmark.toml"
    if file is None and not benchmark.is_file():
        benchmark = None
    store = RecordStore(out_dir)
    valid, bad = store.scan()
    records = {cell_id: dump(record) for cell_id, record in valid.items()}
    result = Status(out_dir, benchmark, unusable=bad, quarantined=store.quarantined())
    executor_params: dict[str, Any] = {}
    if benchmark is None:
        cells = None
    else:
        try:
            the_plan = plan(benchmark, context or RunContext())
        except ConfigError as exc:
            hint = "" if file else " (pass the original benchmark FILE to count pending cells)"
            raise KdbenchError(f"{exc}{hint}") from None
        cells = {cell.id: cell.label() for cell in the_plan.cells}
        executor_params = dict(the_plan.config.executor.params)
        result.cells = len(cells)
    for cell_id, record in records.items():
        if cells is not None and cell_id not in cells:
            result.other_records += 1
        elif record.get("status") == "ok":
            result.done += 1
        else:
            result.failed.append(record)
    if cells is not None:
        result.pending = [label for cell_id, label in cells.items() if cell_id not in records]
    result.jobs = _slurm_jobs(out_dir, executor_params, records)
    return result


def _slurm_jobs(
    out_dir: Path, params: dict[str, Any], records: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Submitted jobs with a cell not done yet (a job runs a cell or a lockstep group)."""
    from kdbench.builtin.executors_slurm import job_states

    folder = Path(params["folder"]).expanduser() if params.get("folder") else out_dir / "slurm"
    done = {cell_id for cell_id, record in records.items() if record.get("status") == "ok"}
    return [job for job in job_states(folder) if not done.issuperset(job["cell_ids"])]
