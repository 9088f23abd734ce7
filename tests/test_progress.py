"""Progress: plain flushed lines without a terminal, an ETA from work done and its rate,
and labels that name the student of a cell without teacher."""

from __future__ import annotations

import io
import re
from pathlib import Path

from click.testing import CliRunner

from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.cli.progress import LineDisplay, Work, clock
from kdbench.engine.context import RunContext
from kdbench.engine.runner import plan

EPOCH_LINE = re.compile(
    r"^(?P<label>digits .+ s\d) epoch (?P<epoch>\d+)/2 loss \d+\.\d{4} test \d+\.\d\d% "
    r"\d+ img/s ETA \d+:\d\d:\d\d$"
)


def test_without_a_terminal_each_cell_logs_one_line_per_epoch_and_one_when_done(tmp_path: Path):
    bench = write_benchmark(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    epochs = [m.groupdict() for line in lines if (m := EPOCH_LINE.match(line))]
    labels = {cell.label() for cell in plan(bench, RunContext()).cells}
    assert len(labels) == 4
    assert sorted((e["label"], e["epoch"]) for e in epochs) == sorted(
        (label, str(epoch)) for label in labels for epoch in (1, 2)
    )
    done = [line for line in lines if line.startswith("ok digits ")]
    assert len(done) == 4 and "(cells 4/4, ETA" in done[-1]


def display(epochs: int, log_every: int) -> tuple[LineDisplay, io.StringIO]:
    stream = io.StringIO()
    shown = LineDisplay(1, stream, epochs={"c": epochs}, log_every=log_every,
                        batch_sizes={"c": 32}, labels={"c": "digits mlp ce s0"})  # fmt: skip
    shown.cell_started("digits mlp ce s0", epochs)
    shown.cells_started(("c",))
    return shown, stream


def test_log_every_thins_the_epoch_lines_but_keeps_the_last():
    shown, stream = display(epochs=5, log_every=2)
    for epoch in range(5):
        shown.step(0, 4, 1.0)
        entry = {"epoch": epoch + 1, "lr": 0.1, "test_top1": 50.0, "train": {"total": 1.0}}
        shown.epoch_entries(epoch, {"c": entry})
        shown.epoch_done(epoch, 1.0)
    logged = [int(line.split()[5].split("/")[0]) for line in stream.getvalue().splitlines()]
    assert logged == [2, 4, 5]


def test_a_teacher_epoch_line_has_its_label_and_loss_without_test_accuracy():
    stream = io.StringIO()
    shown = LineDisplay(0, stream)
    shown.cell_started("teacher cnn on digits", 3)
    shown.epoch_done(0, 2.5)
    assert stream.getvalue().startswith("teacher cnn on digits epoch 1/3 loss 2.5000 ETA ")
    assert "test" not in stream.getvalue()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_eta_comes_from_student_epochs_done_and_their_rate():
    clock_ = Clock()
    work = Work({"a": 10, "b": 10, "c": 20}, now=clock_)
    assert work.eta() is None
    work.start()
    clock_.t += 8.0
    work.partial = 4.0  # a lockstep group of two, two epochs in: steps, not cells, count
    assert work.eta() == 8.0 / 4.0 * 36.0
    work.finish(("a", "b"))
    clock_.t += 32.0
    assert work.completed == 20.0 and work.eta() == 40.0 / 20.0 * 20.0
    work.finish(("a",))  # counted once, whoever reports it
    assert work.completed == 20.0


def test_clock_formats_seconds_and_an_unknown_eta():
    assert clock(3725.4) == "1:02:05"
    assert clock(None) == "?"


def test_a_cell_without_teacher_is_labelled_by_its_student(tmp_path: Path):
    cells = plan(write_benchmark(tmp_path), RunContext()).cells
    labels = {cell.loss.label: cell.label() for cell in cells if cell.seed == 0}
    assert labels == {"ce": "digits mlp ce s0", "kd": "digits cnn->mlp kd s0"}


def test_on_a_terminal_the_bars_show_cells_done_and_an_eta():
    from rich.console import Console

    from kdbench.cli.progress import RichDisplay, make_display

    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    shown = make_display(2, console, skipped=1)
    assert isinstance(shown, RichDisplay)
    shown.work = Work({"c": 2})
    with shown:
        shown.cell_started("digits mlp ce s0", 2)
        shown.cells_started(("c",))
        for epoch in range(2):
            shown.step(0, 1, 1.0)
            shown.epoch_done(epoch, 1.0)
        shown.cell_done("ok")
        shown.advance("ok", "digits mlp ce s0", "c")
    assert shown.work.completed == 2.0
    assert "cells 2/2 ETA 0:00:00" in console.file.getvalue()
