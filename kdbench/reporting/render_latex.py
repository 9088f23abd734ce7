"""The LaTeX tables: booktabs tabulars sized to the page, text escaped for TeX."""

from __future__ import annotations

import re

from kdbench.core.config import BASELINE_LOSS
from kdbench.reporting.board_model import PUBLISHED, Board, CrossPair, Leaderboard
from kdbench.reporting.formats import (
    BETTER,
    METHOD_COLUMNS,
    OVERLAP,
    avg_rank_text,
    board_cells,
    cost_line,
    cross_cell,
    cross_is_best,
    failures,
    num,
    summary_line,
    teacher_line,
)
from kdbench.reporting.published_rows import published_label

_TEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "→": r"$\to$", "±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "‡": r"$^\ddagger$",
    "▲": r"$\uparrow$", "<": r"\textless{}",
    ">": r"\textgreater{}", "−": "-",
}  # fmt: skip


_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX))


def tex(text: str) -> str:
    """Escape LaTeX's special characters (and the few non-ASCII symbols we print)."""
    return _TEX_RE.sub(lambda m: _TEX[m.group(0)], str(text))


def _fit(body: str) -> str:
    """Shrink a tabular to the line width only when it is wider (graphicx)."""
    return (
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n" + body + "}\n"
    )


def latex(board_set: Leaderboard) -> str:
    """booktabs tables to ``\\input``: needs ``\\usepackage{booktabs,graphicx}``."""
    out = [
        "% kdbench leaderboard - needs \\usepackage{booktabs} and \\usepackage{graphicx}",
        "% " + summary_line(board_set),
        "",
    ]
    for board in board_set.boards:
        out.append(_latex_board(board))
    if len(board_set.boards) > 1:
        out.append(_latex_cross(board_set.cross))
    return "\n".join(out)


def _latex_board(board: Board) -> str:
    columns = list(METHOD_COLUMNS)
    published = [r for r in board.rows if r.kind == PUBLISHED]
    sources = sorted({r.source for r in published})
    if board.has_published:
        columns.append("vs published")
    lines = []
    for row in board.rows:
        cells = board_cells(board, row)
        values = [tex(cells.values[c]) for c in columns]
        if cells.best:
            values[1] = f"\\textbf{{{values[1]}}}"
        elif cells.overlap:
            values[1] += tex(OVERLAP)
        if cells.kind == PUBLISHED:
            mark = sources.index(row.source) + 1
            values[0] = f"\\textit{{{values[0]}}}$^{{{mark}}}$"
        lines.append(" & ".join(values) + r" \\")
    spec = "l" + "r" * (len(columns) - 2) + "l"
    body = _tabular(spec, columns, lines)
    notes = [tex(teacher_line(board)), tex(cost_line(board))]
    notes += [f"$^{{{i}}}$ {tex(s)}" for i, s in enumerate(sources, start=1)]
    notes += [tex(f) for f in failures(board)]
    return "\n".join(
        [
            r"\begin{table}[htbp]",
            r"\centering",
            r"\small",
            f"\\caption{{{tex(board.title)}: top-1 (\\%) mean $\\pm$ std over seeds; "
            f"bold: best; $^\\dagger$: 95\\% CI overlaps the best; {tex(BETTER)}: better than "
            f"{BASELINE_LOSS} by a paired t-test; $^\\ddagger$: best epoch, "
            "selected on the test split (never ranked).}",
            _fit(body),
            r"\par\footnotesize " + r" \\ ".join(notes),
            r"\end{table}",
            "",
        ]
    )


def _tabular(spec: str, columns: list[str], lines: list[str]) -> str:
    """A booktabs tabular: header row, rules, body lines."""
    header = " & ".join(tex(c) for c in columns) + r" \\"
    rows = [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", header, r"\midrule", *lines]
    return "\n".join([*rows, r"\bottomrule", r"\end{tabular}", ""])


def _latex_cross(cross: CrossPair) -> str:
    columns = ["method", *cross.columns, "avg rank"]
    lines = [
        " & ".join(["teacher", *[num(cross.teacher[c]) for c in cross.columns], "-"]) + r" \\",
        r"\midrule",
    ]
    for method in cross.methods:
        cells = []
        for column in cross.columns:
            text = tex(cross_cell(cross, method, column))
            cells.append(f"\\textbf{{{text}}}" if cross_is_best(cross, method, column) else text)
        lines.append(" & ".join([tex(method), *cells, tex(avg_rank_text(cross, method))]) + r" \\")
    if cross.published:
        lines.append(r"\midrule")
    for key, values in cross.published.items():
        row = [f"\\textit{{{tex(published_label(*key))}}}"]
        row += [num(values.get(c)) for c in cross.columns]
        lines.append(" & ".join([*row, "-"]) + r" \\")
    spec = "l" + "r" * (len(columns) - 1)
    body = _tabular(spec, columns, lines)
    return "\n".join(
        [
            r"\begin{table}[htbp]",
            r"\centering",
            r"\small",
            r"\caption{Top-1 (\%) per pair, rank within the pair in parentheses; bold: best "
            r"of the pair; published rows take no rank.}",
            _fit(body),
            r"\end{table}",
            "",
        ]
    )
