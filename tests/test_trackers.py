"""Trackers: a digits run read back with TensorBoard's and MLflow's own readers; a tracker
that raises is reported and left out while the run and the other trackers go on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_benchmark
from kdbench import hookimpl
from kdbench.cli import cli
from kdbench.core.plugins import EventHooks
from kdbench.engine.trackers import RunEvent

pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
pytest.importorskip("mlflow", reason="the mlflow package is not installed")


def records(out: Path) -> dict[str, dict]:
    found = (json.loads(p.read_text()) for p in (out / "records").glob("*.json"))
    return {r["cell_id"]: r for r in found}


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One tiny digits run (4 cells, 2 epochs) with TensorBoard and MLflow asked for."""
    folder = tmp_path_factory.mktemp("tracked")
    bench = write_benchmark(folder)
    bench.write_text(bench.read_text() + "\n[trackers.tensorboard]\n[trackers.mlflow]\n")
    out = folder / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    return out, result


def test_tensorboard_event_files_hold_each_cells_epoch_curves(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = tracked_run
    by_id = records(out)
    folders = sorted((out / "tensorboard").iterdir())
    assert len(folders) == len(by_id) == 4
    for folder in folders:
        cell_id = next(c for c in by_id if folder.name.endswith(c[:8]))
        history = by_id[cell_id]["history"]
        scalars = EventAccumulator(str(folder)).Reload()
        top1 = scalars.Scalars("test_top1")
        assert [s.step for s in top1] == [e["epoch"] for e in history] == [1, 2]
        assert [s.value for s in top1] == pytest.approx([e["test_top1"] for e in history])
        lr = [s.value for s in scalars.Scalars("lr")]
        assert lr == pytest.approx([e["lr"] for e in history])
        loss = [s.value for s in scalars.Scalars("train/total")]
        assert loss == pytest.approx([e["train"]["total"] for e in history])
        final = scalars.Scalars("final/top1")[0].value
        assert final == pytest.approx(by_id[cell_id]["metrics"]["top1"])


def test_mlflow_store_has_one_finished_run_per_cell_with_its_curves(tracked_run):
    from mlflow.tracking import MlflowClient

    out, _ = tracked_run
    by_id = records(out)
    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4
    for run in runs:
        record = by_id[run.data.tags["kdbench.cell_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.params["loss"] == record["config"]["loss"]["label"]
        assert run.data.params["seed"] == str(record["config"]["seed"])
        history = client.get_metric_history(run.info.run_id, "test_top1")
        logged = sorted((m.step, m.value) for m in history)
        assert [step for step, _ in logged] == [e["epoch"] for e in record["history"]]
        assert [value for _, value in logged] == pytest.approx(
            [e["test_top1"] for e in record["history"]]
        )
        assert run.data.metrics["final/top1"] == pytest.approx(record["metrics"]["top1"])


def test_json_lines_log_every_event_of_the_run(tracked_run):
    out, _ = tracked_run
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.count("cell_started") == kinds.count("cell_finished") == 4
    assert kinds.count("epoch_ended") == 4 * 2
    assert kinds[-1] == "run_finished" and events[-1]["metrics"]["ran"] == 4
    for cell_id in records(out):
        mine = [e for e in events if e["cell_id"] == cell_id]
        assert [e["kind"] for e in mine] == [
            "cell_started", "epoch_ended", "epoch_ended", "cell_finished",
        ]  # fmt: skip
        assert [e["epoch"] for e in mine[1:3]] == [1, 2]


def test_trackers_do_not_change_the_config_hash_or_cell_ids(tracked_run, tmp_path: Path):
    from kdbench.engine.context import RunContext
    from kdbench.engine.runner import plan

    out, _ = tracked_run
    plain = plan(write_benchmark(tmp_path), RunContext())
    recorded = records(out)
    assert {cell.id for cell in plain.cells} == set(recorded)
    assert {r["benchmark_config_hash"] for r in recorded.values()} == {plain.config_hash}


class Recorder:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    @hookimpl
    def track_event(self, event) -> None:
        self.kinds.append(event.kind)


class Raising:
    calls = 0

    @hookimpl
    def track_event(self, event) -> None:
        Raising.calls += 1
        raise RuntimeError("tracker server unreachable")


def test_a_raising_tracker_is_disabled_and_the_others_still_get_every_event():
    before, after = Recorder(), Recorder()
    hooks = EventHooks({"before": before, "broken": Raising(), "after": after})
    Raising.calls = 0
    failed = hooks.call(event=RunEvent("cell_started", "b", cell_id="x"))
    assert [(name, str(exc)) for name, exc in failed] == [("broken", "tracker server unreachable")]
    assert hooks.call(event=RunEvent("run_finished", "b")) == []
    assert Raising.calls == 1
    assert before.kinds == after.kinds == ["cell_started", "run_finished"]
    assert hooks.names() == ["before", "after"]


class BrokenTracker:
    """Fails on every event."""

    def __init__(self, *, out_dir: Path) -> None:
        self.out_dir = out_dir

    @hookimpl
    def track_event(self, event) -> None:
        raise RuntimeError("tracker server unreachable")


@hookimpl
def register_trackers(register):
    register("broken", BrokenTracker)


def test_a_run_with_a_raising_tracker_reports_it_once_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import kdbench.core.plugins

    # This module, registered as a built-in plugin would be, under a package-like name.
    monkeypatch.setitem(sys.modules, "kdbench_tests.broken_tracker", sys.modules[__name__])
    plugins = (*kdbench.core.plugins.BUILTIN_PLUGINS, "kdbench_tests.broken_tracker")
    monkeypatch.setattr(kdbench.core.plugins, "BUILTIN_PLUGINS", plugins)
    bench = write_benchmark(tmp_path)
    text = (
        bench.read_text()
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace("epochs = 3", "epochs = 1")
    )
    bench.write_text(text + "\n[trackers.broken]\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    import traceback

    traceback.print_exception(result.exc_info[1])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "tracker 'broken'" in line]
    assert len(warnings) == 1 and "disabled" in warnings[0], result.stderr
    assert {r["status"] for r in records(out).values()} == {"ok"}
    kinds = [json.loads(line)["kind"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert kinds.count("cell_finished") == 2 and kinds[-1] == "run_finished"


def test_an_unknown_tracker_is_a_config_error_that_writes_nothing(tmp_path: Path):
    bench = write_benchmark(tmp_path)
    bench.write_text(bench.read_text() + "\n[trackers.tensorbord]\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out)])
    assert result.exit_code == 2
    assert "trackers.tensorbord" in result.stderr and "tensorboard" in result.stderr
    assert not out.exists()


def test_a_cell_trained_elsewhere_has_its_epochs_sent_from_its_record(tmp_path: Path):
    from kdbench.engine.context import RunContext
    from kdbench.engine.runner import plan
    from kdbench.engine.trackers import Trackers, TrackingProgress

    cells = plan(write_benchmark(tmp_path), RunContext()).cells
    seen: list[RunEvent] = []

    class Keep:
        @hookimpl
        def track_event(self, event) -> None:
            seen.append(event)

    trackers = Trackers({"keep": Keep()}, "tiny", cells, warn=pytest.fail)
    history = [
        {"epoch": 1, "lr": 0.05, "test_top1": None, "train": {"total": 2.0}},
        {"epoch": 2, "lr": 0.025, "test_top1": 61.5, "train": {"total": 1.5}},
    ]
    remote = {"cell_id": cells[0].id, "status": "ok", "metrics": {"top1": 61.5}, "history": history}
    trackers.cell_finished(remote)
    assert [(e.kind, e.epoch) for e in seen] == [
        ("cell_started", None), ("epoch_ended", 1), ("epoch_ended", 2), ("cell_finished", None),
    ]  # fmt: skip
    assert seen[1].metrics == {"lr": 0.05, "train/total": 2.0}
    assert seen[2].metrics["test_top1"] == 61.5 and seen[3].metrics == {"top1": 61.5}
    assert seen[0].params["student"] == "mlp" and seen[0].label == cells[0].label()

    # Trained here: epochs go out as they end, and are not sent again with the record.
    seen.clear()
    live = TrackingProgress(trackers)
    live.cell_started("group", 2)
    live.cells_started((cells[1].id,))
    live.epoch_entries(0, {cells[1].id: history[0]})
    live.epoch_done(0, 2.0)
    live.cell_started("teacher cnn on digits", 3)  # not a matrix cell: no event
    trackers.cell_finished({**remote, "cell_id": cells[1].id})
    assert [(e.kind, e.epoch) for e in seen] == [
        ("cell_started", None), ("epoch_ended", 1), ("cell_finished", None),
    ]  # fmt: skip
