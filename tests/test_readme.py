"""The README's sample output is the committed quick-start run's, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

from kdbench.reporting.render_md import markdown
from kdbench.reporting.report import build_leaderboard

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "results" / "digits_cpu"


def readme_sample() -> str:
    """The first code block after the sentence that introduces the sample run."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split("From one run on two CPU cores", 1)[1]
    match = re.search(r"^```\n(.*?)^```$", after, flags=re.S | re.M)
    assert match, "the README's sample block is missing"
    return match.group(1)


def first_board(leaderboard: str) -> str:
    """From the first pair's heading to the next heading."""
    sections = re.split(r"^(?=## )", leaderboard, flags=re.M)
    return sections[1].rstrip("\n") + "\n"


def test_readme_sample_is_the_committed_runs_first_board(monkeypatch):
    monkeypatch.chdir(REPO)
    board = build_leaderboard([RUN.relative_to(REPO)])
    assert board.warnings == []
    regenerated = first_board(markdown(board))
    assert regenerated.startswith("## digits: cnn(width=16) → cnn(width=8)\n")
    assert readme_sample() == regenerated


def test_committed_quick_start_run_is_of_the_benchmark_file_as_it_is():
    copied = (RUN / "benchmark.toml").read_text(encoding="utf-8")
    assert copied == (REPO / "benchmarks" / "digits.toml").read_text(encoding="utf-8")
