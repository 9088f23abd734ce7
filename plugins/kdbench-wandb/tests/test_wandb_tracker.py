"""The W&B tracker writes one offline run per cell, with its curves, and needs no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.trackers import RunEvent

pytest.importorskip("wandb", reason="the wandb package is not installed")

from kdbench_wandb.plugin import WandbTracker  # noqa: E402


def events(cell_id: str, label: str) -> list[RunEvent]:
    return [
        RunEvent("cell_started", "tiny", cell_id=cell_id, label=label, params={"seed": 0}),
        *(
            RunEvent(
                "epoch_ended",
                "tiny",
                cell_id=cell_id,
                label=label,
                epoch=epoch,
                metrics={"test_top1": 40.25 * epoch, "lr": 0.5 / epoch},
            )  # fmt: skip
            for epoch in (1, 2)
        ),
        RunEvent(
            "cell_finished",
            "tiny",
            cell_id=cell_id,
            label=label,
            metrics={"top1": 80.5},
            status="ok",
        ),  # fmt: skip
    ]


@pytest.mark.slow
def test_each_cell_is_an_offline_run_holding_its_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = WandbTracker(out_dir=tmp_path)
    assert tracker.mode == "offline"
    for cell_id, label in [("a1b2c3", "digits mlp ce s0"), ("d4e5f6", "digits mlp kd s1")]:
        for event in events(cell_id, label):
            tracker.track_event(event)
    tracker.close()
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert [run.name.rsplit("-", 1)[1] for run in runs] == ["a1b2c3", "d4e5f6"]
    for run, label in zip(runs, ["digits mlp ce s0", "digits mlp kd s1"], strict=True):
        # The run log is W&B's protobuf records: strings and JSON values stored as bytes.
        data = (run / f"run-{run.name.rsplit('-', 1)[1]}.wandb").read_bytes()
        for expected in (label, "test_top1", "40.25", "80.5", "final/top1"):
            assert expected.encode() in data


def test_the_mode_follows_wandb_mode_unless_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert WandbTracker(out_dir=tmp_path).mode == "disabled"
    assert WandbTracker(out_dir=tmp_path, mode="offline").mode == "offline"
