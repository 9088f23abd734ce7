"""The mlflow tracker against stores it cannot use: a malformed ``tracking_uri`` is one
config line naming the key; a store that fails (no server, an unwritable path) is one
warning, in bounded time, and the run goes on."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.core.errors import ConfigError
from kdbench.engine.trackers import RunEvent

pytest.importorskip("mlflow", reason="the mlflow package is not installed")

from kdbench.builtin.trackers_mlflow import (  # noqa: E402 - needs mlflow
    KEY,
    MlflowTracker,
    MlflowUnavailable,
    check_tracking_uri,
)

STALL_GUARD_S = 60  # MLflow's default retries stall for minutes; a bounded failure is seconds


@pytest.mark.parametrize(
    "uri",
    [
        "/abs/mlruns",
        "relative/mlruns",
        "file:///abs/mlruns",
        "file://localhost/abs/mlruns",
        "http://127.0.0.1:5000",
        "https://mlflow.example.org",
        "databricks",
        "databricks://profile",
        "sqlite:///mlflow.db",
        "postgresql+psycopg2://user@db/mlflow",
    ],
)
def test_uris_of_every_store_mlflow_has_pass_the_form_check(uri: str):
    check_tracking_uri(uri)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("foo://x", "scheme 'foo'"),
        ("file://otherhost/tmp/mlruns", "host 'otherhost'"),
        ("http://", "names no server"),
        ("", "empty"),
    ],
    ids=["unknown-scheme", "remote-file-uri", "http-without-host", "empty"],
)
def test_a_malformed_uri_is_one_config_line_naming_the_key(tmp_path: Path, uri: str, expected):
    with pytest.raises(ConfigError) as caught:
        MlflowTracker(out_dir=tmp_path, tracking_uri=uri)
    error = caught.value
    assert error.key == KEY == "trackers.mlflow.tracking_uri"
    assert "\n" not in str(error) and expected in str(error)
    assert str(error).startswith(f"{KEY}: tracking_uri '{uri}'")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_building_the_tracker_writes_nothing_until_the_first_event(tmp_path: Path):
    MlflowTracker(out_dir=tmp_path, tracking_uri=str(tmp_path / "store"))
    MlflowTracker(out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def refused_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unusable_uris(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return {
        "refused": f"http://127.0.0.1:{refused_port()}",
        "file-under-a-file": (blocker / "mlruns").as_uri(),
        "sqlite-under-a-file": f"sqlite:///{blocker / 'mlflow.db'}",
    }


@pytest.mark.parametrize("kind", ["refused", "file-under-a-file", "sqlite-under-a-file"])
def test_a_store_that_fails_is_one_warning_and_the_run_finishes(tmp_path: Path, kind: str):
    if kind.startswith("sqlite"):
        pytest.importorskip("sqlalchemy")
    uri = unusable_uris(tmp_path)[kind]
    bench = write_benchmark(tmp_path)
    text = (
        bench.read_text()
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace("epochs = 3", "epochs = 1")
    )
    bench.write_text(text + f'\n[trackers.mlflow]\ntracking_uri = "{uri}"\n')
    out = tmp_path / "out"
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    elapsed = time.monotonic() - start
    print(f"{kind}: run with an unusable MLflow store took {elapsed:.1f} s")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.stderr.splitlines() if "mlflow" in line.lower()]
    assert len(warnings) == 1, result.stderr
    assert "tracker 'mlflow'" in warnings[0] and "disabled" in warnings[0]
    assert f"cannot log to MLflow at {uri}" in warnings[0]
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    events = (out / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["kind"] == "run_finished"  # the other trackers went on
    assert elapsed < STALL_GUARD_S


def silent_server() -> tuple[str, socket.socket]:
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        with server:
            while True:
                try:
                    held.append(server.accept()[0])
                except OSError:
                    return

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", server


def test_a_server_that_never_answers_costs_the_timeout_not_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # the user's setting is kept
    uri, server = silent_server()
    tracker = MlflowTracker(out_dir=tmp_path, tracking_uri=uri)
    start = time.monotonic()
    try:
        with pytest.raises(MlflowUnavailable) as caught:
            tracker.track_event(RunEvent("cell_started", "tiny", cell_id="c", label="kd"))
    finally:
        server.close()
    elapsed = time.monotonic() - start
    print(f"silent server: the tracker gave up after {elapsed:.1f} s")
    assert str(caught.value).startswith(f"cannot log to MLflow at {uri} (")
    assert "\n" not in str(caught.value)
    assert elapsed < STALL_GUARD_S
    # the tracker is spent: closing it sends nothing more
    assert tracker.failed and tracker.runs == {}
    tracker.close()


def test_validate_refuses_a_remote_file_store_in_one_line_naming_the_key(tmp_path: Path):
    bench = write_benchmark(tmp_path)
    bench.write_text(bench.read_text() + '\n[trackers.mlflow]\ntracking_uri = "file://nas/runs"\n')
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "kdbench: error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "trackers.mlflow" in errors[0] and "tracking_uri 'file://nas/runs'" in errors[0]
    assert "host 'nas'" in errors[0]
