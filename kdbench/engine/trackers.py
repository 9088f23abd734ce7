"""Run events for trackers: what happened (a cell started, an epoch ended, ...), sent on.

The runner turns training progress and finished records into
:class:`kdbench.core.run_events.RunEvent` values
and hands them to every tracker of the run through the ``track_event`` hook. Trackers
are built from the benchmark's ``[trackers.<name>]`` tables (``jsonl`` always). A
tracker that raises is reported once and left out from then on; the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kdbench.core.errors import ConfigError
from kdbench.core.plugins import EventHooks
from kdbench.core.registry import Registry
from kdbench.core.run_events import KINDS as KINDS  # the event kinds, kept importable here
from kdbench.core.run_events import RunEvent, epoch_metrics, final_metrics
from kdbench.engine.events import Progress
from kdbench.engine.matrix import Cell

ALWAYS = ("jsonl",)


def cell_params(cell: Cell) -> dict[str, Any]:
    """What a tracker shows of a cell: the experiment's names, seed and recipe basics."""
    return {
        "dataset": cell.dataset.name,
        "teacher": cell.teacher.model.name if cell.teacher else "",
        "student": cell.student.name,
        "loss": cell.loss.label,
        "seed": cell.seed,
        "epochs": cell.recipe["epochs"],
        "batch_size": cell.recipe["batch_size"],
    }


def wanted_trackers(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``[trackers.<name>]`` tables, plus the trackers always on (jsonl)."""
    wanted = {name: dict(params) for name, params in tables.items()}
    for name in ALWAYS:
        wanted.setdefault(name, {})
    return wanted


def tracker_errors(
    tables: Mapping[str, Mapping[str, Any]], registry: Registry, *, file: str
) -> list[ConfigError]:
    """Every unknown tracker and every unknown, missing or ill-typed parameter of one."""
    errors: list[ConfigError] = []
    for name, params in wanted_trackers(tables).items():
        try:
            entry = registry.get("trackers", name, file=file, key=f"trackers.{name}")
        except ConfigError as exc:
            errors.append(exc)
            continue
        errors += entry.param_errors(params, file=file, key=f"trackers.{name}")
    return errors


def check_trackers(
    tables: Mapping[str, Mapping[str, Any]], registry: Registry, *, file: str
) -> dict[str, Any]:
    """Each wanted tracker's registry entry (names and parameters checked), jsonl included."""
    entries = {}
    for name, params in wanted_trackers(tables).items():
        entry = registry.get("trackers", name, file=file, key=f"trackers.{name}")
        entry.check_params(params, file=file, key=f"trackers.{name}")
        entries[name] = (entry, params)
    return entries


def build_trackers(
    tables: Mapping[str, Mapping[str, Any]], registry: Registry, out_dir: Path, *, file: str
) -> dict[str, object]:
    """One tracker per ``[trackers.<name>]`` table, plus the ones always on."""
    return {
        name: entry.obj(out_dir=out_dir, **params)
        for name, (entry, params) in check_trackers(tables, registry, file=file).items()
    }


class Trackers:
    """The run's trackers: events in, failures reported through ``warn``."""

    def __init__(
        self,
        trackers: Mapping[str, object],
        benchmark: str,
        cells: list[Cell],
        warn: Callable[[str], None],
    ) -> None:
        self.hooks = EventHooks(trackers)
        self.benchmark = benchmark
        self.cells = {cell.id: cell for cell in cells}
        self.warn = warn
        self.live: set[str] = set()  # cells whose epochs were sent as they ended
        self.closed = False

    def emit(self, kind: str, **fields: Any) -> None:
        event = RunEvent(kind, self.benchmark, **fields)
        for name, exc in self.hooks.call(event=event):
            self.warn(
                f"kdbench: warning: tracker '{name}' failed on {kind} "
                f"({type(exc).__name__}: {exc}); it is disabled for the rest of the run"
            )

    def cell_started(self, cell_id: str) -> None:
        cell = self.cells[cell_id]
        self.emit(
            "cell_started", cell_id=cell_id, label=cell.label(), params=cell_params(cell),
            epochs=cell.recipe["epochs"],
        )  # fmt: skip

    def epoch_ended(self, cell_id: str, entry: Mapping[str, Any]) -> None:
        cell = self.cells[cell_id]
        self.emit(
            "epoch_ended", cell_id=cell_id, label=cell.label(), epoch=int(entry["epoch"]),
            epochs=cell.recipe["epochs"], metrics=epoch_metrics(entry),
        )  # fmt: skip

    def cell_finished(self, record: dict[str, Any]) -> None:
        """A record came back; a cell trained elsewhere has its epochs sent from its history."""
        cell_id = record["cell_id"]
        if cell_id not in self.live:
            self.cell_started(cell_id)
            for entry in record.get("history") or []:
                self.epoch_ended(cell_id, entry)
        self.live.discard(cell_id)
        self.emit(
            "cell_finished", cell_id=cell_id, label=self.cells[cell_id].label(),
            metrics=final_metrics(record), status=record["status"], record=record,
        )  # fmt: skip

    def run_finished(self, ran: int, failed: int, skipped: int) -> None:
        metrics = {"ran": float(ran), "failed": float(failed), "skipped": float(skipped)}
        self.emit("run_finished", metrics=metrics, status="failed" if failed else "ok")

    def close(self) -> None:
        """Close every tracker that has a ``close()``; once, however often called."""
        if self.closed:
            return
        self.closed = True
        for name, tracker in self.hooks.plugins():
            close = getattr(tracker, "close", None)
            if not callable(close):
                continue
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing one must not lose the others
                self.warn(f"kdbench: warning: tracker '{name}' failed to close: {exc}")


class TrackingProgress(Progress):
    """Training progress to a display (if any) and, for matrix cells, to the trackers."""

    def __init__(self, trackers: Trackers, display: Progress | None = None) -> None:
        self.trackers = trackers
        self.display = display or Progress()

    def cell_started(self, label: str, epochs: int) -> None:
        self.display.cell_started(label, epochs)

    def cells_started(self, cell_ids: tuple[str, ...]) -> None:
        self.display.cells_started(cell_ids)
        for cell_id in cell_ids:
            if cell_id in self.trackers.cells:
                self.trackers.live.add(cell_id)
                self.trackers.cell_started(cell_id)

    def step(self, step: int, steps: int, loss: float) -> None:
        self.display.step(step, steps, loss)

    def epoch_entries(self, epoch: int, entries: dict[str, dict[str, Any]]) -> None:
        self.display.epoch_entries(epoch, entries)
        for cell_id, entry in entries.items():
            if cell_id in self.trackers.live:
                self.trackers.epoch_ended(cell_id, entry)

    def epoch_done(self, epoch: int, loss: float) -> None:
        self.display.epoch_done(epoch, loss)

    def cell_done(self, status: str) -> None:
        self.display.cell_done(status)
