"""The kit for trackers, report formats and commands: it passes the built-ins, which keep
the contract, and names the one thing to fix in each broken plugin."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import click
import jsonschema
import pytest

from kdbench import hookimpl
from kdbench.builtin import commands, formats_json, trackers_jsonl
from kdbench.core.plugins import load_plugins
from kdbench.reports import Leaderboard, load_leaderboard
from kdbench.testing import (
    check_command,
    check_format,
    check_tracker,
    sample_leaderboard,
    sample_results,
)

REPO = Path(__file__).resolve().parents[1]


# Trackers


class Recorder:
    """A correct tracker: keeps each event's kind and epoch, writes them out on close."""

    def __init__(self, *, out_dir: Path, name: str = "seen.json") -> None:
        self.path = Path(out_dir) / name
        self.seen: list[tuple[str, int | None]] = []

    @hookimpl
    def track_event(self, event) -> None:
        self.seen.append((event.kind, event.epoch))

    def close(self) -> None:
        self.path.write_text(json.dumps(self.seen), encoding="utf-8")


class Undecorated(Recorder):
    def track_event(self, event) -> None:  # no @hookimpl: pluggy would never call it
        self.seen.append((event.kind, event.epoch))


class NoOutDir:
    def __init__(self, *, folder: str) -> None:
        self.folder = folder

    @hookimpl
    def track_event(self, event) -> None:
        pass


class ReadsRecordWrongly(Recorder):
    @hookimpl
    def track_event(self, event) -> None:
        if event.kind == "cell_finished":
            event.record["top1"]  # the number is under record["metrics"]


class FailsToClose(Recorder):
    def close(self) -> None:
        raise OSError("disk full")


def test_kit_passes_a_correct_tracker_and_sends_a_whole_cell(tmp_path: Path):
    events = check_tracker(Recorder, {"name": "events.json"}, out_dir=tmp_path)
    seen = json.loads((tmp_path / "events.json").read_text(encoding="utf-8"))
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "cell_started" and kinds[-2:] == ["cell_finished", "run_finished"]
    epochs = [epoch for kind, epoch in seen if kind == "epoch_ended"]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 2
    finished = events[-2]
    assert finished.record["cell_id"] == finished.cell_id
    assert finished.metrics["top1"] == finished.record["metrics"]["top1"]


@pytest.mark.parametrize(
    ("tracker", "says"),
    [
        (Undecorated, "decorate it with @kdbench.hookimpl"),
        (NoOutDir, "take out_dir and the TOML parameters as keywords"),
        (ReadsRecordWrongly, "raised KeyError: 'top1' on a cell_finished event"),
        (FailsToClose, "close() raised OSError: disk full"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[:24],
)
def test_kit_names_each_broken_tracker_contract(tracker: type, says: str):
    with pytest.raises(AssertionError) as caught:
        check_tracker(tracker)
    assert says in str(caught.value) and tracker.__name__ in str(caught.value)


def test_builtin_jsonl_tracker_passes_the_kit_and_writes_every_event(tmp_path: Path):
    events = check_tracker(trackers_jsonl.JsonLinesTracker, out_dir=tmp_path)
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["kind"] for line in lines] == [e.kind for e in events]


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_builtin_optional_trackers_pass_the_kit(name: str, tmp_path: Path):
    pytest.importorskip({"tensorboard": "tensorboard", "mlflow": "mlflow"}[name])
    tracker = load_plugins(strict=False).registry.get("trackers", name).obj
    check_tracker(tracker, out_dir=tmp_path)
    assert any(tmp_path.rglob("*")), f"the {name} tracker wrote nothing"


# Formats


def methods(board: Leaderboard) -> str:
    """One line per pair: its title and methods, best first."""
    return "".join(f"{b.title}: {', '.join(r.label for r in b.rows)}\n" for b in board.boards)


_calls = itertools.count()


def counted(board: Leaderboard) -> str:
    return f"{methods(board)}rendered {next(_calls)} times\n"


def consuming(board: Leaderboard) -> str:
    return "".join(f"{b.title}: {b.rows.pop(0).label}\n" for b in board.boards)


def nothing(board: Leaderboard) -> str:
    return "" if board.boards else "no pairs"


def as_bytes(board: Leaderboard) -> bytes:
    return methods(board).encode()


def test_kit_passes_a_format_and_returns_its_text_on_real_results():
    text = check_format(methods, "methods.txt")
    assert text.splitlines() == [
        "digits: cnn(width=16) → cnn(width=8): kd, ce",
        "digits: cnn(width=16) → mlp(hidden=32): kd, ce",
    ]


@pytest.mark.parametrize(
    ("render", "filename", "says"),
    [
        (counted, None, "renders the same leaderboard differently twice"),
        (consuming, None, "do not change the leaderboard"),
        (nothing, None, "returned empty text"),
        (as_bytes, None, "returned bytes; return the text (str)"),
        (methods, "out/methods.txt", "must be a bare file name"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v))[:24],
)
def test_kit_names_each_broken_format_contract(render, filename, says: str):
    with pytest.raises(AssertionError) as caught:
        check_format(render, filename)
    assert says in str(caught.value) and render.__name__ in str(caught.value)


def test_builtin_json_format_passes_the_kit_and_keeps_its_schema():
    text = check_format(formats_json.leaderboard_json, "leaderboard.json")
    schema = json.loads((REPO / "docs" / "leaderboard.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(text), schema, cls=jsonschema.Draft202012Validator)


def test_sample_leaderboard_is_the_shipped_records_as_kdbench_report_reads_them():
    board = sample_leaderboard()
    assert len(list((sample_results() / "records").glob("*.json"))) == 8
    assert [len(b.measured) for b in board.boards] == [2, 2] and board.warnings == []
    assert {r.n for b in board.boards for r in b.rows} == {2}


# Commands


@click.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False))
def best(results: str) -> None:
    """Print each pair's best method."""
    for board in load_leaderboard(results, use_reference=False).boards:
        click.echo(f"{board.title}: {board.measured[0].label}")


@click.command()
@click.argument("results")
def undocumented(results: str) -> None:
    click.echo(results)


@click.command()
@click.argument("results")
def crashes(results: str) -> None:
    """Crash on the records."""
    raise ValueError(f"cannot parse {results}")


@click.command()
@click.option("--dir", "folder", required=True)
def wants_an_option(folder: str) -> None:
    """Print the folder."""
    click.echo(folder)


@hookimpl
def register_two(cli):
    cli.add_command(best)
    cli.add_command(wants_an_option, name="where")


def test_kit_passes_a_command_that_reads_a_results_folder():
    out = check_command(best)
    assert out.splitlines() == [
        "digits: cnn(width=16) → cnn(width=8): kd",
        "digits: cnn(width=16) → mlp(hidden=32): kd",
    ]
    assert (
        check_command(register_two, ["--dir", "{results}"], name="where")
        .strip()
        .endswith("results")
    )


@pytest.mark.parametrize(
    ("command", "args", "says"),
    [
        (undocumented, ["{results}"], "has no help; give its function a docstring"),
        (crashes, ["{results}"], "raised ValueError: cannot parse"),
        (wants_an_option, ["{results}"], "on a results folder exited 2"),
        (register_two, ["{results}"], "adds best, where; pass name= to choose one"),
    ],
    ids=["undocumented", "crashes", "wrong-arguments", "two-commands"],
)
def test_kit_names_each_broken_command_contract(command, args, says: str):
    with pytest.raises(AssertionError) as caught:
        check_command(command, args)
    assert says in str(caught.value)


def test_builtin_schema_command_passes_the_kit_through_its_hook():
    out = check_command(commands.register_commands, [])
    assert json.loads(out)["title"] == "Record"
