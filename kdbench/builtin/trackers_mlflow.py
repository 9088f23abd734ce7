"""The ``mlflow`` tracker: one MLflow run per cell, in a local store beside the records.

Parameters are the cell's names, seed and recipe basics; metrics the per-epoch curves
(step = epoch) and the final accuracy, size and latency numbers; tags the cell id and
label. The default store is MLflow's file store in ``<results>/mlruns`` (read it with
``mlflow ui --backend-store-uri <results>/mlruns``); ``tracking_uri`` names another.
Needs ``mlflow`` (or ``mlflow-skinny``); asked for by a ``[trackers.mlflow]`` table.

A tracker must never hold up the run it watches: the URI's form is checked when the
tracker is built (so ``validate`` refuses a scheme MLflow has no store for), the store
is first touched at the first event, MLflow's HTTP retries are capped for the tracker's
own calls, and any failure of the store becomes one short line, after which the run
goes on without this tracker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kdbench import hookimpl
from kdbench.core.errors import ConfigError, KdbenchError

KEY = "trackers.mlflow.tracking_uri"
# MLflow's own tracking stores; plugins add schemes through this entry-point group.
STORE_SCHEMES = ("file", "http", "https", "databricks")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # SQLAlchemy stores
PLUGIN_GROUP = "mlflow.tracking_store"
LOCAL_HOSTS = ("", ".", "localhost", "127.0.0.1")
# Unless set by the user: a store that does not answer costs at most three tries of
# 10 s each, not MLflow's default of minutes of retries with backoff.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


class MlflowUnavailable(KdbenchError):
    """The MLflow store could not be used; the message is one line naming the URI."""


def check_tracking_uri(uri: str) -> None:
    """Refuse a ``tracking_uri`` whose form no MLflow tracking store accepts."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if not uri.strip():
        raise ConfigError("tracking_uri '' is empty; expected a path or a URI", key=KEY)
    if len(scheme) <= 1:  # a plain path (or a Windows drive letter): the file store
        return
    base = scheme.split("+", 1)[0]  # postgresql+psycopg2 is a dialect and a driver
    if base in SQL_SCHEMES:
        if importlib.util.find_spec("sqlalchemy") is None:
            raise ConfigError(
                f"tracking_uri '{uri}' is a database store, which needs the sqlalchemy package "
                f"(pip install mlflow, or pip install sqlalchemy)",
                key=KEY,
            )
        return
    if scheme not in STORE_SCHEMES and scheme not in _plugin_schemes():
        known = ", ".join((*STORE_SCHEMES, *SQL_SCHEMES, *sorted(_plugin_schemes())))
        raise ConfigError(
            f"tracking_uri '{uri}' has the scheme '{scheme}', for which MLflow has no "
            f"tracking store; expected a path or a URI with one of: {known}",
            key=KEY,
        )
    if scheme == "file" and (parsed.hostname or "") not in LOCAL_HOSTS:
        raise ConfigError(
            f"tracking_uri '{uri}' names the host '{parsed.hostname}'; a file store is local "
            f"(file:///absolute/path, or a plain path)",
            key=KEY,
        )
    if scheme in ("http", "https") and not parsed.hostname:
        raise ConfigError(
            f"tracking_uri '{uri}' names no server (expected {scheme}://host:port)", key=KEY
        )


def _plugin_schemes() -> set[str]:
    return {entry.name for entry in entry_points(group=PLUGIN_GROUP)}


@contextlib.contextmanager
def _bounded_http() -> Iterator[None]:
    """MLflow's HTTP retries and timeout capped (where the user set none) for one call."""
    added = [name for name in HTTP_LIMITS if name not in os.environ]
    os.environ.update({name: HTTP_LIMITS[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of ``exc`` in one short line (not MLflow's wrapped layers)."""
    while (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text[:200]}"


class MlflowTracker:
    """Log each cell as an MLflow run of the experiment ``experiment`` (default: benchmark)."""

    def __init__(
        self, *, out_dir: Path, tracking_uri: str | None = None, experiment: str | None = None
    ) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise KdbenchError(
                "trackers.mlflow: needs the mlflow package (pip install mlflow-skinny)"
            )
        if tracking_uri is None:
            tracking_uri = (Path(out_dir) / "mlruns").resolve().as_uri()
            self.default_store = True
        else:
            check_tracking_uri(tracking_uri)
            self.default_store = False
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.experiment_id: str | None = None
        self.runs: dict[str, str] = {}  # cell id -> MLflow run id
        self.failed = False
        self._client = None  # made at the first event: building the tracker writes nothing

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One client call, bounded in time; a failure becomes one line and ends tracking."""
        try:
            with _bounded_http():
                return getattr(self.client(), method)(*args, **kwargs)
        except Exception as exc:
            self.failed = True
            self.runs.clear()  # nothing more is sent to this store, not even at close
            raise MlflowUnavailable(
                f"cannot log to MLflow at {self.tracking_uri} ({_root_cause(exc)})"
            ) from None

    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            if self.default_store:
                # MLflow 3 asks for this opt-in to keep using the plain local file store.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment_id(self, benchmark: str) -> str:
        if self.experiment_id is None:
            name = self.experiment or benchmark
            found = self._call("get_experiment_by_name", name)
            self.experiment_id = (
                found.experiment_id if found else self._call("create_experiment", name)
            )
        return self.experiment_id

    @hookimpl
    def track_event(self, event) -> None:
        if event.kind == "cell_started":
            run = self._call(
                "create_run",
                self._experiment_id(event.benchmark),
                run_name=event.label,
                tags={"kdbench.cell_id": event.cell_id},
            )
            self.runs[event.cell_id] = run.info.run_id
            for name, value in event.params.items():
                self._call("log_param", run.info.run_id, name, value)
        elif event.kind == "epoch_ended" and event.cell_id in self.runs:
            for name, value in event.metrics.items():
                self._call("log_metric", self.runs[event.cell_id], name, value, step=event.epoch)
        elif event.kind == "cell_finished" and event.cell_id in self.runs:
            run_id = self.runs[event.cell_id]
            for name, value in event.metrics.items():
                self._call("log_metric", run_id, f"final/{name}", value)
            self._call("set_terminated", run_id, "FINISHED" if event.status == "ok" else "FAILED")
            self.runs.pop(event.cell_id, None)

    def close(self) -> None:
        """Mark the runs of cells that never finished as killed (unless the store failed)."""
        for run_id in list(self.runs.values()):
            self._call("set_terminated", run_id, "KILLED")
        self.runs.clear()


@hookimpl
def register_trackers(register):
    register("mlflow", MlflowTracker)
