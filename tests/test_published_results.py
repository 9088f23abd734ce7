"""The repository's own published results are a function of its committed records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench.reporting.render_csv import leaderboard_csv
from kdbench.reporting.render_md import markdown
from kdbench.reporting.report import build_leaderboard

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = ["results/fashion_mnist", "results/digits_cpu", "results/fashion_mnist_tuned"]
# fashion_mnist: 8 losses x 3 seeds; digits: 2 students x 4 losses x 3 seeds;
# fashion_mnist_tuned: 5 methods x 8 trials, then 5 x 3 seeds tuned and 5 x 3 published
RECORDS = {"results/fashion_mnist": 24, "results/digits_cpu": 24,
           "results/fashion_mnist_tuned": 70}  # fmt: skip


@pytest.mark.parametrize("folder", PUBLISHED)
def test_committed_leaderboard_regenerates_byte_for_byte(folder, monkeypatch):
    monkeypatch.chdir(REPO)  # the leaderboard names its folder as given, relative to here
    board = build_leaderboard([Path(folder)])
    assert board.warnings == []
    assert markdown(board) == (REPO / folder / "leaderboard.md").read_text(encoding="utf-8")
    assert leaderboard_csv(board) == (REPO / folder / "leaderboard.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("folder", PUBLISHED)
def test_published_run_is_complete(folder):
    records = [json.loads(p.read_text(encoding="utf-8"))
               for p in (REPO / folder / "records").glob("*.json")]  # fmt: skip
    assert len(records) == RECORDS[folder]
    for record in records:  # a tuning trial may have been pruned: its study stopped it
        trial = record["config"].get("phase") == "trial"
        assert record["status"] in (("ok", "pruned") if trial else ("ok",)), record["cell_id"]
