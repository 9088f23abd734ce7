"""The repository's own published results are a function of its committed records."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.reporting.render_csv import leaderboard_csv
from kdbench.reporting.render_md import markdown
from kdbench.reporting.report import build_leaderboard

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = ["results/fashion_mnist", "results/digits_cpu"]


@pytest.mark.parametrize("folder", PUBLISHED)
def test_committed_leaderboard_regenerates_byte_for_byte(folder, monkeypatch):
    monkeypatch.chdir(REPO)  # the leaderboard names its folder as given, relative to here
    board = build_leaderboard([Path(folder)])
    assert board.warnings == []
    assert markdown(board) == (REPO / folder / "leaderboard.md").read_text(encoding="utf-8")
    assert leaderboard_csv(board) == (REPO / folder / "leaderboard.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("folder", PUBLISHED)
def test_published_run_is_complete(folder):
    records = list((REPO / folder / "records").glob("*.json"))
    assert len(records) == 24  # fashion_mnist: 8 losses x 3 seeds; digits: 2 x 4 x 3
    assert all('"status": "ok"' in path.read_text(encoding="utf-8") for path in records)
