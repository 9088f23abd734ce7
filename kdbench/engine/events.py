"""The progress protocol training reports to.

The CLI's display implements it, trackers forward it, tests and workers ignore it. It
lives apart from the training loop so a display can implement it without importing
torch.
"""

from __future__ import annotations

from typing import Any


class Progress:
    """Receives training progress; the CLI shows it, tests and workers ignore it."""

    def cell_started(self, label: str, epochs: int) -> None: ...

    def cells_started(self, cell_ids: tuple[str, ...]) -> None:
        """The matrix cells of the unit that just started (after ``cell_started``)."""

    def step(self, step: int, steps: int, loss: float) -> None: ...

    def epoch_entries(self, epoch: int, entries: dict[str, dict[str, Any]]) -> None:
        """Each live run's history entry by run name (its cell id), just before ``epoch_done``."""

    def epoch_done(self, epoch: int, loss: float) -> None: ...

    def cell_done(self, status: str) -> None: ...
