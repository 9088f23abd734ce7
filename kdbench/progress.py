"""The progress display: cell k of n, epoch and running loss (rich), or nothing."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from kdbench.training import Progress


class RichDisplay(Progress):
    """Two bars: the matrix (cells done of n) and the current cell's epochs."""

    def __init__(self, total_cells: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.matrix = self.bars.add_task("cells", total=total_cells, info="")
        self.current = None
        self.epochs = 0

    def __enter__(self) -> RichDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def cell_started(self, label: str, epochs: int) -> None:
        if self.current is not None:
            self.bars.remove_task(self.current)
        self.epochs = epochs
        self.current = self.bars.add_task(f"  {label}", total=epochs, info="")

    def step(self, step: int, steps: int, loss: float) -> None:
        if self.current is not None and step % 10 == 0:
            self.bars.update(self.current, info=f"step {step + 1}/{steps} loss {loss:.4f}")

    def epoch_done(self, epoch: int, loss: float) -> None:
        if self.current is not None:
            self.bars.update(
                self.current, completed=epoch + 1, info=f"epoch {epoch + 1} loss {loss:.4f}"
            )

    def cell_done(self, status: str) -> None:
        if self.current is not None:
            self.bars.remove_task(self.current)
            self.current = None

    def advance(self, status: str, label: str) -> None:
        """One matrix cell finished (or was skipped)."""
        self.bars.advance(self.matrix)
        if status != "ok":
            self.console.print(f"[red]failed[/red] {label}")
