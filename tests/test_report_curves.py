"""Training curves per pair: test accuracy and loss terms against epoch, mean over seeds."""

from __future__ import annotations

import statistics

import pytest
from test_report_coverage import record

from kdbench.reporting.collect import Collected
from kdbench.reporting.leaderboard import build
from kdbench.reporting.plots import figures, shown_methods, training_curves


def with_history(rec: dict, seed: int, accuracy: bool) -> dict:
    rec["history"] = [
        {
            "epoch": e,
            "lr": 0.1,
            "test_top1": 50.0 + 10 * e + seed if accuracy else None,
            "train": {"ce": 2.0 / e + 0.1 * seed, "total": 3.0 / e},
        }
        for e in (1, 2, 3)
    ]
    return rec


def boards(accuracy: bool = True):
    records = [
        with_history(record(4, method, seed, 70.0 + seed), seed, accuracy)
        for method in ("ce", "kd")
        for seed in (0, 1, 2)
    ]
    return build(Collected(records=records))


def test_curves_are_the_mean_and_std_over_seeds_per_epoch():
    (board,) = boards().boards
    row = next(r for r in board.rows if r.method == "kd")
    assert [e for e, *_ in row.curves["test_top1"]] == [1, 2, 3]
    epoch, mean, std, n = row.curves["test_top1"][1]
    assert (epoch, n) == (2, 3) and mean == pytest.approx(71.0)
    assert std == pytest.approx(statistics.stdev([70.0, 71.0, 72.0]))
    assert row.curves["train/ce"][0][1] == pytest.approx(2.1)
    assert set(row.curves) == {"test_top1", "train/ce", "train/total"}


def test_curve_figure_has_an_accuracy_panel_and_one_loss_panel_per_method():
    board_set = boards()
    fig = training_curves(board_set.boards[0])
    assert len(fig.axes) == 1 + 2
    acc = fig.axes[0]
    assert len(acc.lines) == 2 and acc.get_xlabel() == "epoch"
    assert shown_methods(fig) == ["ce", "kd"]
    stems = set(figures(board_set))
    assert any(s.startswith("curves_") for s in stems)


def test_records_without_per_epoch_accuracy_draw_loss_panels_only():
    board_set = boards(accuracy=False)
    (board,) = board_set.boards
    assert all("test_top1" not in r.curves for r in board.rows)
    fig = training_curves(board)
    assert len(fig.axes) == 2
    for rec in board.rows:
        rec.curves = {}
    assert training_curves(board) is None
