"""The ``mlflow`` tracker: one MLflow run per cell, in a local store beside the records.

Parameters are the cell's names, seed and recipe basics; metrics the per-epoch curves
(step = epoch) and the final accuracy, size and latency numbers; tags the cell id and
label. The default store is MLflow's file store in ``<results>/mlruns`` (read it with
``mlflow ui --backend-store-uri <results>/mlruns``); ``tracking_uri`` names another.
Needs ``mlflow`` (or ``mlflow-skinny``); asked for by a ``[trackers.mlflow]`` table.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdbench import hookimpl
from kdbench.core.errors import KdbenchError


class MlflowTracker:
    """Log each cell as an MLflow run of the experiment ``experiment`` (default: benchmark)."""

    def __init__(
        self, *, out_dir: Path, tracking_uri: str | None = None, experiment: str | None = None
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise KdbenchError(
                "trackers.mlflow: needs the mlflow package (pip install mlflow-skinny)"
            ) from None
        if tracking_uri is None:
            # MLflow 3 asks for this opt-in to keep using the plain local file store.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            tracking_uri = (Path(out_dir) / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment = experiment
        self.experiment_id: str | None = None
        self.runs: dict[str, str] = {}  # cell id -> MLflow run id

    def _experiment_id(self, benchmark: str) -> str:
        if self.experiment_id is None:
            name = self.experiment or benchmark
            found = self.client.get_experiment_by_name(name)
            self.experiment_id = (
                found.experiment_id if found else self.client.create_experiment(name)
            )
        return self.experiment_id

    @hookimpl
    def track_event(self, event) -> None:
        if event.kind == "cell_started":
            run = self.client.create_run(
                self._experiment_id(event.benchmark),
                run_name=event.label,
                tags={"kdbench.cell_id": event.cell_id},
            )
            self.runs[event.cell_id] = run.info.run_id
            for name, value in event.params.items():
                self.client.log_param(run.info.run_id, name, value)
        elif event.kind == "epoch_ended" and event.cell_id in self.runs:
            for name, value in event.metrics.items():
                self.client.log_metric(self.runs[event.cell_id], name, value, step=event.epoch)
        elif event.kind == "cell_finished" and event.cell_id in self.runs:
            run_id = self.runs.pop(event.cell_id)
            for name, value in event.metrics.items():
                self.client.log_metric(run_id, f"final/{name}", value)
            self.client.set_terminated(run_id, "FINISHED" if event.status == "ok" else "FAILED")

    def close(self) -> None:
        for run_id in self.runs.values():
            self.client.set_terminated(run_id, "KILLED")
        self.runs.clear()


@hookimpl
def register_trackers(register):
    register("mlflow", MlflowTracker)
