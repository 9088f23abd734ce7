"""The Markdown leaderboard: one table per pair, the cross-pair matrix, the runs."""

from __future__ import annotations

from tabulate import tabulate

from kdbench.reporting.board_model import PUBLISHED, CrossPair, Leaderboard
from kdbench.reporting.formats import (
    OVERLAP,
    RUN_COLUMNS,
    avg_rank_text,
    board_cells,
    board_columns,
    cost_line,
    cross_cell,
    cross_is_best,
    failures,
    notes,
    num,
    show,
    summary_line,
    teacher_line,
    tuning_lines,
)
from kdbench.reporting.published_rows import published_label


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(board_set: Leaderboard) -> str:
    """For READMEs: one table per pair, the cross-pair matrix, notes, warnings, runs."""
    out = ["# kdbench leaderboard", "", summary_line(board_set), ""]
    for board in board_set.boards:
        out += [f"## {board.title}", "", teacher_line(board), "", cost_line(board), ""]
        columns = board_columns(board)
        rows = []
        for row in board.rows:
            cells = board_cells(board, row)
            values = [_md_escape(cells.values[c]) for c in columns]
            top = values[1]
            if cells.best:
                top = f"**{top}**"
            elif cells.overlap:
                top = f"{top} {OVERLAP}"
            values[1] = top
            if cells.kind == PUBLISHED:
                values[0] = f"*{values[0]}*"
            rows.append(values)
        out.append(tabulate(rows, headers=columns, tablefmt="github", disable_numparse=True))
        tuned = tuning_lines(board)
        if tuned:
            out += ["", "Tuned:", *[f"- {_md_escape(line)}" for line in tuned]]
        fails = failures(board)
        if fails:
            out += ["", "Failures:", *[f"- {_md_escape(f)}" for f in fails]]
        out.append("")
    if len(board_set.boards) > 1:
        out += ["## All pairs: top-1 % (rank in pair)", "", _md_cross(board_set.cross), ""]
    out += ["## Notes", "", *[f"- {n}" for n in notes(board_set)], ""]
    if board_set.warnings:
        out += ["## Warnings", "", *[f"- {_md_escape(w)}" for w in board_set.warnings], ""]
    out += ["## Provenance", "", _md_runs(board_set), ""]
    return "\n".join(out)


def _md_cross(cross: CrossPair) -> str:
    headers = ["method", *cross.columns, "avg rank"]
    rows = [["teacher", *[num(cross.teacher[c]) for c in cross.columns], "-"]]
    for method in cross.methods:
        cells = []
        for column in cross.columns:
            text = cross_cell(cross, method, column)
            cells.append(f"**{text}**" if cross_is_best(cross, method, column) else text)
        rows.append([method, *cells, avg_rank_text(cross, method)])
    for key, values in cross.published.items():
        rows.append([f"*{published_label(*key)}*", *[num(values.get(c)) for c in cross.columns],
                     "-"])  # fmt: skip
    headers = [_md_escape(h) for h in headers]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _md_runs(board_set: Leaderboard) -> str:
    rows = [[_md_escape(show(run.get(c))) for c in RUN_COLUMNS] for run in board_set.runs]
    return tabulate(rows, headers=RUN_COLUMNS, tablefmt="github", disable_numparse=True)
