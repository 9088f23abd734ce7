"""The progress display: rich bars on a terminal, one flushed line per epoch elsewhere.

Both show an ETA from the work done and its rate, counted in student-epochs (a
lockstep group of k students does k per epoch) and advanced step by step, so a long
cell moves the estimate while it trains, not only when it ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from kdbench.engine.events import Progress


def clock(seconds: float | None) -> str:
    """``0:04:10``; ``?`` while there is nothing to estimate from."""
    return "?" if seconds is None else str(timedelta(seconds=round(seconds)))


class Work:
    """Student-epochs to do, done so far, and the ETA their rate gives."""

    def __init__(self, epochs: Mapping[str, int], now=time.monotonic) -> None:
        self.epochs = dict(epochs)  # per pending cell id
        self.total = float(sum(self.epochs.values()))
        self.done = 0.0
        self.partial = 0.0  # of the unit training now
        self.counted: set[str] = set()
        self.now = now
        self.started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = self.now()

    def finish(self, cell_ids: tuple[str, ...] | list[str]) -> None:
        for cell_id in cell_ids:
            if cell_id in self.epochs and cell_id not in self.counted:
                self.counted.add(cell_id)
                self.done += self.epochs[cell_id]
        self.partial = 0.0

    @property
    def completed(self) -> float:
        return min(self.total, self.done + self.partial)

    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before anything was done."""
        if self.started is None or self.completed <= 0:
            return None
        rate = self.completed / max(self.now() - self.started, 1e-9)
        return (self.total - self.completed) / rate


class _Display(Progress):
    """What both displays track: the current unit, its epochs, steps and timing."""

    def __init__(self, total_cells: int, epochs: Mapping[str, int], skipped: int) -> None:
        self.total_cells = total_cells
        self.finished = skipped
        self.work = Work(epochs)
        self.label = ""
        self.epochs = 0
        self.cell_ids: tuple[str, ...] = ()
        self.steps = 0
        self.entries: dict[str, Mapping[str, Any]] = {}  # of the epoch just ended, by cell id
        self._epoch_index = 0  # epochs of the current unit done
        self.epoch_started = time.monotonic()
        self.cell_started_at = self.epoch_started

    def cell_started(self, label: str, epochs: int) -> None:
        self.label, self.epochs, self.cell_ids = label, epochs, ()
        self.steps = self._epoch_index = 0
        self.epoch_started = self.cell_started_at = time.monotonic()

    def cells_started(self, cell_ids: tuple[str, ...]) -> None:
        self.cell_ids = tuple(cell_ids)
        self.work.start()

    def epoch_entries(self, epoch: int, entries: dict[str, dict[str, Any]]) -> None:
        self.entries = dict(entries)

    def step(self, step: int, steps: int, loss: float) -> None:
        self.steps = steps
        if self.cell_ids and self._mine():
            epoch = self._epoch_index
            self.work.partial = (epoch + (step + 1) / steps) * len(self._mine())

    def _mine(self) -> list[str]:
        return [c for c in self.cell_ids if c in self.work.epochs]

    def epoch_done(self, epoch: int, loss: float) -> None:
        self._epoch_index = epoch + 1
        if self._mine():
            self.work.partial = (epoch + 1) * len(self._mine())
        self.epoch_started = time.monotonic()

    def eta(self) -> float | None:
        """The run's ETA; for work outside the matrix (a teacher), this unit's."""
        if self.cell_ids:
            return self.work.eta()
        if not self._epoch_index:
            return None
        per_epoch = (time.monotonic() - self.cell_started_at) / self._epoch_index
        return per_epoch * (self.epochs - self._epoch_index)

    def cell_done(self, status: str) -> None:
        self.work.finish(self.cell_ids)
        self._epoch_index = 0

    def advance(self, status: str, label: str, cell_id: str | None = None) -> None:
        """One matrix cell's record came back (trained here or by a worker)."""
        self.finished += 1
        if cell_id is not None:
            self.work.start()
            self.work.finish((cell_id,))


class RichDisplay(_Display):
    """Two bars: the matrix (student-epochs, cells done of n, ETA) and the current unit."""

    def __init__(
        self,
        total_cells: int,
        console: Console | None = None,
        *,
        epochs: Mapping[str, int] | None = None,
        skipped: int = 0,
    ) -> None:
        super().__init__(total_cells, epochs or {}, skipped)
        self.console = console or Console(stderr=True)
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.matrix = self.bars.add_task(
            "student-epochs", total=self.work.total or None, info=self._info()
        )
        self.current = None

    def _info(self) -> str:
        return f"cells {self.finished}/{self.total_cells} ETA {clock(self.work.eta())}"

    def _refresh(self) -> None:
        self.bars.update(self.matrix, completed=round(self.work.completed), info=self._info())

    def __enter__(self) -> RichDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def cell_started(self, label: str, epochs: int) -> None:
        super().cell_started(label, epochs)
        if self.current is not None:
            self.bars.remove_task(self.current)
        self.current = self.bars.add_task(f"  {label}", total=epochs, info="")

    def step(self, step: int, steps: int, loss: float) -> None:
        super().step(step, steps, loss)
        if self.current is not None and step % 10 == 0:
            self.bars.update(self.current, info=f"step {step + 1}/{steps} loss {loss:.4f}")
            self._refresh()

    def epoch_done(self, epoch: int, loss: float) -> None:
        super().epoch_done(epoch, loss)
        if self.current is not None:
            info = f"epoch {epoch + 1} loss {loss:.4f} ETA {clock(self.eta())}"
            self.bars.update(self.current, completed=epoch + 1, info=info)
        self._refresh()

    def cell_done(self, status: str) -> None:
        super().cell_done(status)
        if self.current is not None:
            self.bars.remove_task(self.current)
            self.current = None
        self._refresh()

    def advance(self, status: str, label: str, cell_id: str | None = None) -> None:
        super().advance(status, label, cell_id)
        self._refresh()
        if status != "ok":
            self.console.print(f"[red]failed[/red] {label}")


class LineDisplay(_Display):
    """Plain lines for logs (Slurm, nohup, CI): per cell, one each ``log_every`` epochs
    (and the last), and one when the cell finishes.

    ``digits cnn_large->cnn kd s0 epoch 3/20 loss 0.4120 test 91.20% 5120 img/s ETA 0:01:10``
    """

    def __init__(
        self,
        total_cells: int,
        stream: IO[str] | None = None,
        *,
        epochs: Mapping[str, int] | None = None,
        skipped: int = 0,
        log_every: int = 1,
        batch_sizes: Mapping[str, int] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(total_cells, epochs or {}, skipped)
        self.labels = dict(labels or {})
        self.stream = stream or sys.stderr
        self.log_every = max(1, log_every)
        self.batch_sizes = dict(batch_sizes or {})

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _say(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def epoch_done(self, epoch: int, loss: float) -> None:
        seconds = time.monotonic() - self.epoch_started
        entries, self.entries = self.entries, {}
        super().epoch_done(epoch, loss)
        if (epoch + 1) % self.log_every and epoch + 1 != self.epochs:
            return
        tail = []
        batch = next((self.batch_sizes[c] for c in self.cell_ids if c in self.batch_sizes), None)
        if batch and self.steps and seconds > 0:
            tail.append(f"{self.steps * batch / seconds:.0f} img/s")
        tail.append(f"ETA {clock(self.eta())}")
        # One line per cell of a lockstep group, each with its own loss and accuracy.
        rows = [(self.labels[c], e) for c, e in entries.items() if c in self.labels]
        for label, entry in rows or [(self.label, {"train": {"total": loss}})]:
            parts = [f"{label} epoch {epoch + 1}/{self.epochs}"]
            parts.append(f"loss {entry['train']['total']:.4f}")
            if entry.get("test_top1") is not None:
                parts.append(f"test {entry['test_top1']:.2f}%")
            self._say(" ".join(parts + tail))

    def advance(self, status: str, label: str, cell_id: str | None = None) -> None:
        super().advance(status, label, cell_id)
        self._say(
            f"{status} {label} (cells {self.finished}/{self.total_cells}, "
            f"ETA {clock(self.work.eta())})"
        )


def make_display(
    total_cells: int,
    console: Console,
    *,
    cells: Sequence[Any] = (),  # the pending matrix cells
    skipped: int = 0,
    log_every: int = 1,
) -> RichDisplay | LineDisplay:
    """Bars on a terminal, plain flushed lines when output goes to a file or a pipe."""
    epochs = {cell.id: cell.recipe["epochs"] for cell in cells}
    if console.is_terminal:
        return RichDisplay(total_cells, console, epochs=epochs, skipped=skipped)
    return LineDisplay(
        total_cells, console.file, epochs=epochs, skipped=skipped, log_every=log_every,
        batch_sizes={cell.id: cell.recipe["batch_size"] for cell in cells},
        labels={cell.id: cell.label() for cell in cells},
    )  # fmt: skip
