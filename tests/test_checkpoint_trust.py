"""A checkpoint is trusted only when it is the cell's own: anything else is set aside with
one line saying why and the cell trains in full; a group's checkpoint outlives the
moment its records are written; dead writers' temporaries are cleaned."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console
from test_cell_resume import Interrupted, StopAfter, groups_of, with_outputs

from conftest import write_benchmark
from kdbench.engine.cell import run_group
from kdbench.engine.cell_checkpoint import CheckpointKeeper, GroupCheckpoint, Outputs
from kdbench.engine.context import RunContext
from kdbench.engine.runner import plan, run_benchmark
from kdbench.records.lock import results_lock
from kdbench.records.store import RecordStore


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The resume benchmark's single (ce) cell: its context, its job, an uninterrupted
    run's record, and the real checkpoints it and a cell of another recipe leave when
    stopped after two of their four epochs."""
    from test_cell_resume import RESUME

    from conftest import cell_jobs

    folder = tmp_path_factory.mktemp("trust")
    context, jobs = cell_jobs(write_benchmark(folder, text=RESUME), folder)
    _, unit = groups_of(jobs)
    [straight] = run_group(with_outputs(unit, folder / "straight"), context)
    saved = {}
    faster = {**unit[0].cell.recipe, "optimizer": {**unit[0].cell.recipe["optimizer"], "lr": 0.5}}
    other = [replace(unit[0], cell=replace(unit[0].cell, recipe=faster))]
    for name, jobs_ in (("own", unit), ("other_recipe", other)):
        out = folder / name
        with pytest.raises(Interrupted):
            run_group(with_outputs(jobs_, out), context, StopAfter(2))
        saved[name] = checkpoint_of(jobs_, out).path.read_bytes()
    return context, unit, straight, saved


def checkpoint_of(jobs, out: Path) -> GroupCheckpoint:
    ids, recipes = [job.cell.id for job in jobs], [job.cell.recipe for job in jobs]
    return GroupCheckpoint(Outputs(str(out)), ids, recipes)


def _edit(edit):
    def write(path: Path, saved: dict[str, bytes]) -> None:
        path.write_bytes(saved["own"])
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)

    return write


def _reshape_first_weight(state: dict) -> None:
    weights = state["runs"][0]["model"]
    first = next(iter(weights))
    weights[first] = torch.zeros(3)


def _other_recipe(path: Path, saved: dict[str, bytes]) -> None:
    """The checkpoint of a cell trained at another learning rate, put in this one's folder
    under this cell's id: only its recipes say it is not this cell's."""
    path.write_bytes(saved["other_recipe"])
    state = torch.load(path, weights_only=True)
    state["cells"] = [path.parent.name]
    torch.save(state, path)


TAMPERED = {
    "epoch-999": (_edit(lambda s: s.update(epochs_done=999)), "claims 999 epochs done"),
    "other-cell": (_edit(lambda s: s.update(cells=["c-other"])), "is of cells ['c-other']"),
    "wrong-shapes": (_edit(_reshape_first_weight), "student 1.model."),
    "other-recipe": (_other_recipe, "other recipes"),
    "truncated": (
        lambda path, saved: path.write_bytes(saved["own"][: len(saved["own"]) // 2]),
        "it is unreadable",
    ),
    "not-a-checkpoint": (lambda path, saved: torch.save([1, 2], path), "holds a list"),
}


@pytest.mark.parametrize("how", list(TAMPERED))
def test_a_checkpoint_not_the_cells_own_is_set_aside_and_the_cell_trains_in_full(
    single, tmp_path, how
):
    context, unit, straight, saved = single
    tamper, reason = TAMPERED[how]
    checkpoint = checkpoint_of(unit, tmp_path)
    checkpoint.folder.mkdir(parents=True)
    tamper(checkpoint.path, saved)

    [record] = run_group(with_outputs(unit, tmp_path), context)

    assert record["status"] == "ok", record.get("error")
    assert record["metrics"] == straight["metrics"]  # top-1 and all: trained from epoch 0
    assert record["history"] == straight["history"]
    assert "resumed_from_epoch" not in record["cost"]
    note = record["resume_note"]
    assert "\n" not in note and str(checkpoint.path) in note and reason in note, note
    assert note.endswith("trained from epoch 0")


def test_the_cells_own_checkpoint_is_used(single, tmp_path):
    """The control: the untampered file resumes after its two epochs, to the same record."""
    context, unit, straight, saved = single
    checkpoint = checkpoint_of(unit, tmp_path)
    checkpoint.folder.mkdir(parents=True)
    checkpoint.path.write_bytes(saved["own"])
    [record] = run_group(with_outputs(unit, tmp_path), context)
    assert record.get("resume_note") is None, record.get("resume_note")
    assert record["cost"]["resumed_from_epoch"] == 2
    assert record["metrics"] == straight["metrics"]


# --- the runner: records first, then the checkpoint ------------------------------------


def run(bench: Path, out: Path) -> str:
    """``kdbench run`` in this process on the CPU; what it printed."""
    context = RunContext()
    printed = io.StringIO()
    console = Console(file=printed, width=400)
    run_benchmark(plan(bench, context), context, out_dir=out, device="cpu", quiet=True,
                  console=console)  # fmt: skip
    return printed.getvalue()


def records_of(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def killed_run(tmp_path: Path, monkeypatch, target, name: str) -> tuple[Path, Path]:
    """The tiny benchmark run into ``tmp_path/out``, killed at the first call of
    ``target.name`` (before it does anything); the benchmark file and the folder."""

    def kill(self, record):
        raise Interrupted

    bench = write_benchmark(tmp_path)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(target, name, kill)
        with pytest.raises(Interrupted):
            run(bench, out)
    return bench, out


def test_a_kill_before_the_records_are_written_resumes_from_the_checkpoint(tmp_path, monkeypatch):
    bench, out = killed_run(tmp_path, monkeypatch, RecordStore, "write")
    [folder] = (out / "checkpoints").iterdir()  # the first cell's, trained, not recorded
    assert (folder / "state.pt").is_file() and not records_of(out)

    run(bench, out)
    run(bench, tmp_path / "straight")
    resumed, straight = records_of(out), records_of(tmp_path / "straight")
    assert resumed[folder.name]["cost"]["resumed_from_epoch"] == 1
    assert all(resumed[c]["metrics"] == straight[c]["metrics"] for c in straight)
    assert list((out / "checkpoints").iterdir()) == []


def test_a_kill_after_the_records_are_written_keeps_them_and_trains_nothing_again(
    tmp_path, monkeypatch
):
    bench, out = killed_run(tmp_path, monkeypatch, CheckpointKeeper, "recorded")
    [(cell_id, first)] = records_of(out).items()
    assert (out / "checkpoints" / cell_id / "state.pt").is_file()  # not deleted yet
    written = (out / "records" / f"{cell_id}.json").read_bytes()

    run(bench, out)
    assert (out / "records" / f"{cell_id}.json").read_bytes() == written  # not run again
    assert len(records_of(out)) == 4 and first["status"] == "ok"
    assert list((out / "checkpoints").iterdir()) == []


def test_the_run_says_in_one_line_why_a_checkpoint_was_set_aside(tmp_path, monkeypatch):
    bench, out = killed_run(tmp_path, monkeypatch, RecordStore, "write")
    [path] = (out / "checkpoints").glob("*/state.pt")
    state = torch.load(path, weights_only=True)
    state["epochs_done"] = 999
    torch.save(state, path)

    printed = run(bench, out)
    [line] = [line for line in printed.splitlines() if "set aside" in line]
    assert line == (
        f"kdbench: warning: checkpoint '{path.resolve()}' set aside: it claims 999 epochs "
        "done, and the recipe trains 2; trained from epoch 0"
    )
    record = records_of(out)[path.parent.name]
    assert record["resume_note"] == line.removeprefix("kdbench: warning: ")
    assert "resumed_from_epoch" not in record["cost"]


def test_the_keeper_deletes_a_group_checkpoint_only_once_all_its_records_are_written(tmp_path):
    outputs = Outputs(str(tmp_path))
    group = GroupCheckpoint(outputs, ["c-a", "c-b"], [{"epochs": 3}] * 2)
    group.save(0, 1.0, {}, [{}, {}])
    failed_before = GroupCheckpoint(outputs, ["c-c"], [{"epochs": 3}])
    failed_before.save(0, 1.0, {}, [{}])
    said: list[str] = []
    keeper = CheckpointKeeper(outputs, done=lambda cell_id: False, say=said.append)
    keeper.recorded({"cell_id": "c-a", "resume_note": "checkpoint 'x' set aside: why"})
    assert group.path.is_file() and failed_before.path.is_file()
    keeper.recorded({"cell_id": "c-b", "resume_note": "checkpoint 'x' set aside: why"})
    assert not group.folder.exists() and failed_before.path.is_file()
    assert said == ["kdbench: warning: checkpoint 'x' set aside: why"]  # once per group
    kept = CheckpointKeeper(replace(outputs, keep_checkpoints=True), lambda c: True, print)
    assert kept.sweep() == [] and failed_before.path.is_file()
    assert CheckpointKeeper(outputs, lambda c: True, print).sweep() == [failed_before.folder]


# --- dead writers' temporaries -----------------------------------------------------------


def test_the_next_holder_removes_dead_writers_temporaries_of_students_and_checkpoints(
    tmp_path,
):  # and of the teacher-logit store
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, kept = [], []
    folders = ("students", "logits", "checkpoints/c-x", "checkpoints/group-y")
    for folder in (out / name for name in folders):
        folder.mkdir(parents=True)
        stale.append(folder / f".state.pt.{dead.pid}-0123abcd.tmp")  # its writer is gone
        kept.append(folder / f".state.pt.{os.getpid()}-0123abcd.tmp")  # a live writer's
    kept.append(out / "checkpoints" / "c-x" / "state.pt")
    for path in stale + kept:
        path.write_text("partial", encoding="utf-8")
    with results_lock(out):
        assert not any(path.exists() for path in stale)
        assert all(path.is_file() for path in kept)
