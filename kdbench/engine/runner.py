"""``kdbench run``: config -> matrix -> resume -> teachers -> executor -> records -> tables."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from kdbench.core.config import BenchmarkConfig, read_benchmark
from kdbench.core.overrides import Override, overridden_text
from kdbench.core.threads import oversubscribed, resolve_threads, using_threads
from kdbench.engine.cache_policy import logit_demand
from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.cell_checkpoint import CheckpointKeeper, Outputs
from kdbench.engine.context import RunContext, resolve_device
from kdbench.engine.events import Progress
from kdbench.engine.job import CellJob
from kdbench.engine.lockstep import lockstep_groups
from kdbench.engine.matrix import Cell, cells_and_pairs, stable_hash, teachers_of
from kdbench.engine.teachers import provision
from kdbench.engine.trackers import Trackers, TrackingProgress, build_trackers
from kdbench.engine.validation import validate_benchmark
from kdbench.records.executor_note import ExecutorNote, write_executor_note
from kdbench.records.identity import configuration_id
from kdbench.records.lock import results_lock
from kdbench.records.plan_note import write_plan_note
from kdbench.records.store import RecordStore, write_text_atomic
from kdbench.records.tuned import final_slots

DisplayFactory = Callable[..., Any]
"""``display(total_cells, console, *, cells, skipped, log_every)``: a :class:`Progress`
that is also a context manager and has ``advance(status, label, cell_id)``."""

Summarize = Callable[[Path, set[str]], str]
"""``summarize(out_dir, cell_ids)``: write the run's tables, return the one to print."""


@dataclass
class Plan:
    """A validated benchmark and its cells."""

    path: Path
    config: BenchmarkConfig
    cells: list[Cell]
    config_hash: str
    overrides: tuple[Override, ...] = ()
    # a tuned benchmark's cells: the [[pairs]] entry each came from (its search space)
    pair_of: dict[str, int] = field(default_factory=dict)

    def benchmark_text(self) -> str:
        """What the results folder keeps as ``benchmark.toml``: the file that ran, with
        any ``--set`` values in it (then headed by a comment naming each)."""
        source = self.path.read_text(encoding="utf-8")
        if not self.overrides:
            return source
        return overridden_text(source, read_benchmark(self.path), str(self.path), self.overrides)


@dataclass
class RunResult:
    out_dir: Path
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    table: str = ""


def plan(
    path: str | Path,
    context: RunContext,
    *,
    validate: bool = False,
    confirmed: bool = False,
    devices: int | None = None,
    overrides: Sequence[Override] = (),
) -> Plan:
    """The benchmark and its cells, nothing written.

    ``validate`` (validate, run, teachers train) also builds every dataset, model and loss
    and applies the limits, which ``confirmed`` lifts; without it only the file's keys,
    values and names are checked (enough to count cells, as ``kdbench status`` does).
    ``devices`` (``--devices``) replaces every cell's ``[recipe] devices``, and so its id;
    ``overrides`` (``--set``) replace values of the file (:mod:`kdbench.core.overrides`).
    """
    path = Path(path)
    config, cells = validate_benchmark(
        path, context, build=validate, confirmed=confirmed or not validate, devices=devices,
        overrides=overrides,
    )  # fmt: skip
    # validate_benchmark checked the trackers' names and parameters too
    if devices is not None:
        cells = [replace(cell, recipe={**cell.recipe, "devices": devices}) for cell in cells]
    pair_of: dict[str, int] = {}
    if config.tune is not None:  # each cell's [[pairs]] entry: cells keep the matrix order
        pairs = [i for _, i in cells_and_pairs(config, context.plugins.registry, path)]
        pair_of = {cell.id: i for cell, i in zip(cells, pairs, strict=True)}
    # The cell limit steers this run only; it is not part of the experiment.
    # Nor are the trackers watching it (nor an absent [tune]: older hashes stay).
    identity = config.model_dump(exclude={"benchmark": {"max_cells"}, "trackers": True})
    if config.tune is None:
        del identity["tune"]
    return Plan(path, config, cells, stable_hash(identity), tuple(overrides), pair_of)


def load_datasets(the_plan: Plan, context: RunContext) -> None:
    """Load every dataset up front: a missing one fails before anything is written."""
    for dataset in {cell.dataset.name: cell.dataset for cell in the_plan.cells}.values():
        context.dataset(dataset)


def default_out_dir(config: BenchmarkConfig) -> Path:
    # The name is validated as a plain slug, so this stays inside results/.
    return Path("results") / config.benchmark.name


def run_benchmark(
    the_plan: Plan,
    context: RunContext,
    *,
    out_dir: Path,
    device: str = "auto",
    executor: str | None = None,
    quiet: bool = False,
    console: Console | None = None,
    wait: bool = False,
    threads: int | None = None,
    log_every: int = 1,
    display: DisplayFactory | None = None,
    summarize: Summarize | None = None,
) -> RunResult:
    """Run every cell without a complete record; write records and tables.

    Teachers are provisioned here first; then the executor runs the cells and each
    record is written the moment it comes back. A failed cell is run again up to
    ``[executor] retries`` times (as a further round, after the current one). Ctrl-C
    or any error cancels whatever the executor has submitted and re-raises.

    Nothing is written before the datasets load and the executor is built; from then
    on this process holds ``out_dir``'s lock: another holder makes it refuse at once
    (:class:`~kdbench.records.lock.FolderInUse`), or, with ``wait``, queue behind it.

    ``threads`` (``--threads``) overrides the executor's own; this process trains
    teachers (and, with an in-process executor, cells) with :func:`run_threads`.
    Trackers get every cell's events; ``log_every`` thins the plain progress lines.

    The engine shows and tabulates nothing itself: ``display`` builds the progress
    display (unless ``quiet``) and ``summarize`` writes the run's tables and returns the
    one to print; both come from the caller (the CLI), which alone imports them.
    """
    console = console or Console(stderr=True)
    torch_device = resolve_device(device)
    load_datasets(the_plan, context)
    executor_cfg = the_plan.config.executor
    executor_name = executor or executor_cfg.name
    executor_entry = context.plugins.registry.get("executors", executor_name, key="--executor")
    params = dict(executor_cfg.params) if executor_name == executor_cfg.name else {}
    if threads and "threads" in executor_entry.params:
        params["threads"] = threads
    runner = executor_entry.obj(**params)
    in_process = getattr(runner, "in_process", False)
    # Workers elsewhere resolve "auto" themselves: a GPU node picks CUDA even when the
    # machine running kdbench (a login node) has none.
    cell_device = str(torch_device) if in_process or device != "auto" else device

    def say(line: str) -> None:  # one unwrapped line: it names a path
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    here = run_threads(the_plan.config, threads)
    with results_lock(out_dir, wait=wait, notify=say), using_threads(here):
        store = RecordStore(out_dir)
        for bad in store.quarantine():  # unusable records: moved aside, their cells rerun
            say(f"kdbench: warning: {bad}, moved to records/.quarantine/")
        outputs = Outputs(str(out_dir.resolve()), **the_plan.config.run.model_dump())
        checkpoints = CheckpointKeeper(outputs, store.is_done, say)
        checkpoints.sweep()  # a group's records written, its checkpoint not yet deleted
        tuned = the_plan.config.tune is not None
        untuned = not tuned or the_plan.config.tune.published
        pending = [cell for cell in the_plan.cells if untuned and not store.is_done(cell.id)]
        total = len(the_plan.cells) if untuned else 0
        if tuned:  # each cell's slot is filled by its method's final run
            slots = final_slots(store.scan()[0].values())
            pending += [cell for cell in the_plan.cells if cell.id not in slots]
            total += len(the_plan.cells)
        result = RunResult(out_dir, skipped=total - len(pending))
        benchmark_text = the_plan.benchmark_text()
        write_text_atomic(out_dir / "benchmark.toml", benchmark_text)
        write_plan_note(out_dir, benchmark_text, {c.id: c.label() for c in the_plan.cells})
        write_executor_note(out_dir, ExecutorNote.of(executor_name, params, type(runner)))
        console.print(
            f"{the_plan.config.benchmark.name}: {total} "
            f"{'tuned cells' if tuned and not untuned else 'cells'}, "
            f"{result.skipped} already done, {len(pending)} to run on {cell_device} "
            f"({executor_name} executor) -> {out_dir}"
        )

        if pending and (busy := oversubscribed(here)):
            say(busy)
        shown = None
        if display and not quiet:
            shown = display(
                total + trial_budget(the_plan), console, cells=pending,
                skipped=result.skipped, log_every=log_every,
            )  # fmt: skip
        trackers = Trackers(
            build_trackers(the_plan.config.trackers, context.plugins.registry, out_dir,
                           file=str(the_plan.path)),
            the_plan.config.benchmark.name, pending, say,
        )  # fmt: skip
        progress = TrackingProgress(trackers, shown)
        try:
            if pending or tuned:  # before teachers: a broken executor setup fails fast
                _call(runner, "start", out_dir)
            with shown or nullcontext():
                needed = the_plan.cells if tuned else pending
                teachers = provision_teachers(needed, context, out_dir, torch_device, shown)
                lockstep = executor_cfg.lockstep
                # With lockstep, a unit is a group of cells sharing teacher, data and seed;
                # out of process, the bare function goes: it pickles, workers add a context.
                run: Callable[..., Any] = run_group if lockstep else run_cell
                if in_process:
                    run = functools.partial(run, context=context, progress=progress)

                def execute(cells: list[Cell], pruning: dict[str, dict[str, Any]]) -> None:
                    """Run cells through the executor; write each record as it comes."""
                    demand = logit_demand(cells, context.plugins.registry, lockstep)
                    jobs = [
                        CellJob(
                            cell=cell,
                            device=cell_device,
                            teacher_weights=(
                                # absolute: a worker elsewhere may start in another directory
                                str(Path(teachers[cell.teacher.id]["weights"]).resolve())
                                if cell.teacher
                                else None
                            ),
                            teacher_info=teachers[cell.teacher.id] if cell.teacher else None,
                            source_dir=str(the_plan.path.parent.resolve()),
                            config_hash=the_plan.config_hash,
                            outputs=outputs,
                            logit_demand=demand.get(cell.id),
                            pruning=pruning.get(cell.id),
                        )
                        for cell in cells
                    ]
                    labels = {cell.id: cell.label() for cell in cells}
                    trackers.cells.update({cell.id: cell for cell in cells})
                    rounds = _with_retries(
                        runner, jobs, run, executor_cfg.retries, labels, console,
                        lockstep=lockstep,
                    )  # fmt: skip
                    for record in rounds:
                        record["executor"] = executor_name
                        store.write(record)
                        checkpoints.recorded(record)  # only now may its checkpoint go
                        result.ran += 1
                        trackers.cell_finished(record)
                        if shown:
                            shown.advance(record["status"], labels[record["cell_id"]],
                                          record["cell_id"])  # fmt: skip

                if tuned:  # Optuna is imported by tuned runs alone
                    from kdbench.engine.tuning import run_tuning

                    finals = run_tuning(the_plan, context, store, execute, out_dir, say)
                else:
                    execute(pending, {})
        except BaseException:
            trackers.close()
            try:
                _call(runner, "cancel")
            except Exception as exc:  # noqa: BLE001 - the original error is the one to report
                console.print(f"[red]could not cancel submitted cells:[/red] {exc}")
            raise
        finally:
            _call(runner, "close")

        cell_ids = {cell.id for cell in (finals if tuned else the_plan.cells)}
        result.failed = failed_cells(store, cell_ids)
        if summarize:
            result.table = summarize(out_dir, cell_ids)
        trackers.run_finished(result.ran, len(result.failed), result.skipped)
        trackers.close()
    return result


def trial_budget(the_plan: Plan) -> int:
    """The most trials a tuned plan runs: ``[tune] trials`` per method (0 untuned)."""
    tune = the_plan.config.tune
    if tune is None:
        return 0
    return tune.trials * len({configuration_id(cell.config()) for cell in the_plan.cells})


def run_threads(config: BenchmarkConfig, threads: int | None = None) -> int:
    """Torch threads for training in this process: ``--threads``, the executor's, or cores."""
    return resolve_threads(threads or config.executor.params.get("threads"))


def failed_cells(store: RecordStore, cell_ids: set[str]) -> list[str]:
    """This benchmark's cells whose record says ``failed``, in cell-id order."""
    valid, _ = store.scan()
    return sorted(cid for cid, record in valid.items() if cid in cell_ids and record.status != "ok")


def _with_retries(
    runner: Any,
    jobs: list[CellJob],
    run: Callable[..., Any],
    retries: int,
    labels: dict[str, str],
    console: Console,
    *,
    lockstep: bool = False,
) -> Iterator[dict[str, Any]]:
    """Final records only: a failed cell goes into the next round until its tries run out.

    With ``lockstep`` a round's units are the lockstep groups of its cells (a retry round
    regroups the failed ones); an executor may answer a unit with a list of records.
    Each record says how many times its cell ran (``attempts``) and keeps the errors of
    the tries before the last (``earlier_errors``).
    """
    by_id = {job.cell.id: job for job in jobs}
    attempts = dict.fromkeys(by_id, 0)
    earlier: dict[str, list[dict[str, Any]]] = {cell_id: [] for cell_id in by_id}
    todo = jobs
    while todo:
        again = []
        units = lockstep_groups(todo) if lockstep else todo
        for result in runner.map(units, run):
            for record in result if isinstance(result, list) else [result]:
                if _retry(record, attempts, earlier, retries, labels, console):
                    again.append(by_id[record["cell_id"]])
                else:
                    yield record
        todo = again


def _retry(
    record: dict[str, Any],
    attempts: dict[str, int],
    earlier: dict[str, list[dict[str, Any]]],
    retries: int,
    labels: dict[str, str],
    console: Console,
) -> bool:
    """Count the attempt; True when the cell failed and has tries left."""
    cell_id = record["cell_id"]
    attempts[cell_id] += 1
    record["attempts"] = attempts[cell_id]
    if earlier[cell_id]:
        record["earlier_errors"] = earlier[cell_id]
    if record["status"] in ("ok", "pruned") or attempts[cell_id] > retries:
        return False
    error = record.get("error") or {}
    earlier[cell_id].append({k: error.get(k) for k in ("type", "message")})
    console.print(
        f"[yellow]retrying[/yellow] {labels[cell_id]} (try {attempts[cell_id]} of "
        f"{retries + 1} failed: {error.get('message')})"
    )
    return True


def _call(runner: Any, method: str, *args: Any) -> None:
    """Call an executor's optional lifetime method (start, cancel, close) if it has one."""
    function = getattr(runner, method, None)
    if callable(function):
        function(*args)


def provision_teachers(
    cells: list[Cell],
    context: RunContext,
    out_dir: Path,
    device: torch.device,
    display: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Each distinct teacher once: trained and cached, or loaded; accuracy measured."""
    return {
        spec.id: provision(spec, context, out_dir, device, display) for spec in teachers_of(cells)
    }
