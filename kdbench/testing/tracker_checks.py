"""``check_tracker``: a tracker driven through one cell's events the way a run sends them."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdbench.core.plugins import EventHooks
from kdbench.core.run_events import RunEvent, epoch_metrics, final_metrics
from kdbench.testing.samples import sample_record


def sample_events(benchmark: str = "digits") -> list[RunEvent]:
    """A run of one finished cell, as a run sends it: started, its epochs, finished, done.

    Built from a shipped record (:func:`kdbench.testing.samples.sample_record`), so the
    numbers, the history and the record are what a real run hands a tracker.
    """
    record = sample_record()
    config, cell_id = record["config"], record["cell_id"]
    teacher = (config.get("teacher") or {}).get("model") or {}
    epochs = config["recipe"]["epochs"]
    label = f"{config['dataset']['name']} {teacher.get('name', '')}->{config['student']['name']}"
    label = f"{label} {config['loss']['label']} s{config['seed']}"
    params = {
        "dataset": config["dataset"]["name"],
        "teacher": teacher.get("name", ""),
        "student": config["student"]["name"],
        "loss": config["loss"]["label"],
        "seed": config["seed"],
        "epochs": epochs,
        "batch_size": config["recipe"]["batch_size"],
    }
    cell = {"benchmark": benchmark, "cell_id": cell_id, "label": label}
    events = [RunEvent("cell_started", **cell, params=params, epochs=epochs)]
    for entry in record["history"]:
        metrics = epoch_metrics(entry)
        events.append(
            RunEvent("epoch_ended", **cell, epoch=entry["epoch"], epochs=epochs, metrics=metrics)
        )
    finished = final_metrics(record)
    events.append(
        RunEvent("cell_finished", **cell, metrics=finished, status=record["status"], record=record)
    )
    done = {"ran": 1.0, "failed": 0.0, "skipped": 0.0}
    events.append(RunEvent("run_finished", benchmark, metrics=done, status="ok"))
    return events


@contextmanager
def _folder(out_dir: str | Path | None) -> Iterator[Path]:
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        yield Path(out_dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def check_tracker(
    tracker_class: Callable[..., Any],
    params: Mapping[str, Any] | None = None,
    *,
    out_dir: str | Path | None = None,
) -> list[RunEvent]:
    """Assert a tracker's contract with a run; return the events it was sent.

    Built as ``[trackers.<name>]`` builds it, ``tracker_class(out_dir=, **params)``
    (``out_dir``: a temporary folder unless given, so a test can read what it wrote),
    it must implement ``track_event`` as a :data:`kdbench.hookimpl`, take every event of
    a finished cell (started, each epoch, finished with its record) and of the run's end
    without raising, and close (its optional ``close()``) without raising.
    """
    name = getattr(tracker_class, "__name__", repr(tracker_class))
    events = sample_events()
    with _folder(out_dir) as folder:
        try:
            tracker = tracker_class(out_dir=folder, **dict(params or {}))
        except Exception as exc:
            raise AssertionError(
                f"{name}(out_dir=..., **params) raised {type(exc).__name__}: {exc}; a run "
                "builds trackers so: take out_dir and the TOML parameters as keywords"
            ) from exc
        method = getattr(tracker, "track_event", None)
        assert callable(method), f"{name} has no track_event(self, event) method"
        assert hasattr(method, "kdbench_impl"), (
            f"{name}.track_event is not a hook implementation; decorate it with "
            "@kdbench.hookimpl, or the run never calls it"
        )
        try:
            hooks = EventHooks({name: tracker})
        except Exception as exc:
            raise AssertionError(
                f"{name} cannot be registered for track_event ({exc}); its signature must "
                "be track_event(self, event)"
            ) from exc
        for event in events:
            failed = hooks.call(event=event)
            if failed:
                exc = failed[0][1]
                raise AssertionError(
                    f"{name}.track_event raised {type(exc).__name__}: {exc} on a "
                    f"{event.kind} event; a run disables a tracker that raises"
                ) from exc
        close = getattr(tracker, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:
                raise AssertionError(
                    f"{name}.close() raised {type(exc).__name__}: {exc}; flush and release "
                    "what it holds without raising"
                ) from exc
    return events
