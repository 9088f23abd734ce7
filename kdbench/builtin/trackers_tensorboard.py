"""The ``tensorboard`` tracker: per-epoch curves of every cell as TensorBoard event files.

One run folder per cell (``<log_dir>/<label>-<cell id prefix>``), scalars ``test_top1``,
``lr`` and ``train/<term>`` against the epoch; final metrics under ``final/``. Needs the
``tensorboard`` package; asked for by a ``[trackers.tensorboard]`` table.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdbench import hookimpl
from kdbench.core.errors import KdbenchError


def run_folder(label: str, cell_id: str) -> str:
    """A folder name that reads as the cell and stays unique: ``digits_cnn_mlp_kd_s0-1a2b3c4d``."""
    return f"{re.sub(r'[^A-Za-z0-9.]+', '_', label)}-{cell_id[:8]}"


class TensorBoardTracker:
    """Write ``<results>/tensorboard`` (or ``log_dir``), one event-file folder per cell."""

    def __init__(self, *, out_dir: Path, log_dir: str | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise KdbenchError(
                "trackers.tensorboard: needs the tensorboard package (pip install tensorboard)"
            ) from None
        self.writer_class = SummaryWriter
        self.log_dir = Path(log_dir) if log_dir else Path(out_dir) / "tensorboard"
        self.writers: dict[str, object] = {}

    def _writer(self, event):
        if event.cell_id not in self.writers:
            folder = self.log_dir / run_folder(event.label or "", event.cell_id)
            self.writers[event.cell_id] = self.writer_class(log_dir=str(folder))
        return self.writers[event.cell_id]

    @hookimpl
    def track_event(self, event) -> None:
        if event.kind == "cell_started":
            writer = self._writer(event)
            writer.add_text("cell", "  \n".join(f"{k}: {v}" for k, v in event.params.items()))
        elif event.kind == "epoch_ended":
            writer = self._writer(event)
            for name, value in event.metrics.items():
                writer.add_scalar(name, value, global_step=event.epoch)
            writer.flush()
        elif event.kind == "cell_finished":
            writer = self._writer(event)
            for name, value in event.metrics.items():
                writer.add_scalar(f"final/{name}", value, global_step=0)
            writer.close()
            del self.writers[event.cell_id]

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


@hookimpl
def register_trackers(register):
    register("tensorboard", TensorBoardTracker)
