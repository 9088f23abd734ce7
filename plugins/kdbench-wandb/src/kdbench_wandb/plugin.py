"""The ``wandb`` tracker: one Weights & Biases run per cell, offline unless asked otherwise.

Written against kdbench's public plugin API only, as a third party's tracker would be.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdbench import KdbenchError, hookimpl


class WandbTracker:
    """Log each cell as a W&B run in ``project`` (default: the benchmark's name).

    ``mode`` is W&B's (``offline``, ``online``, ``disabled``); by default ``$WANDB_MODE``,
    else ``offline``, so a run never needs an account or the network unless asked to.
    Runs are written under ``<results>/wandb`` (or ``dir``).
    """

    def __init__(
        self,
        *,
        out_dir: Path,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        dir: str | None = None,  # noqa: A002 - W&B's own name for it
    ) -> None:
        try:
            import wandb
        except ImportError:
            raise KdbenchError(
                "trackers.wandb: needs the wandb package (pip install wandb)"
            ) from None
        self.wandb = wandb
        self.project = project
        self.entity = entity
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self.dir = Path(dir) if dir else Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, object] = {}

    @hookimpl
    def track_event(self, event) -> None:
        if event.kind == "cell_started":
            self.runs[event.cell_id] = self.wandb.init(
                project=self.project or event.benchmark,
                entity=self.entity,
                group=event.benchmark,
                name=event.label,
                id=event.cell_id,
                config={**event.params, "cell_id": event.cell_id},
                dir=str(self.dir),
                mode=self.mode,
                reinit="create_new",
            )
        elif event.kind == "epoch_ended" and event.cell_id in self.runs:
            self.runs[event.cell_id].log(dict(event.metrics), step=event.epoch)
        elif event.kind == "cell_finished" and event.cell_id in self.runs:
            run = self.runs.pop(event.cell_id)
            run.summary.update({f"final/{k}": v for k, v in event.metrics.items()})
            run.summary["status"] = event.status
            run.finish(exit_code=0 if event.status == "ok" else 1)

    def close(self) -> None:
        for run in self.runs.values():
            run.finish(exit_code=1)
        self.runs.clear()


@hookimpl
def register_trackers(register):
    register("wandb", WandbTracker)
