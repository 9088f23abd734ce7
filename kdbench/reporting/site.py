"""The leaderboard as one self-contained HTML page (inline CSS, JS and images).

One file that can be mailed, attached to a release or opened offline: no CDN, no
external fonts or scripts. Tables sort by clicking a header; every record's
provenance is listed so a reader can tell which machine and code produced a number.
"""

from __future__ import annotations

import base64
import html
import json
import math
from typing import Any

from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from kdbench.reporting.board_model import PUBLISHED, Board, Leaderboard, Row
from kdbench.reporting.formats import (
    BEST_LABEL,
    CI_LABEL,
    DELTA_LABEL,
    OVERLAP,
    P_LABEL,
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
    summary_line,
    teacher_line,
    tuning_lines,
)
from kdbench.reporting.plots import PER_PAIR, method_colors, png_bytes, shown_methods, slug
from kdbench.reporting.published_rows import published_label
from kdbench.reporting.render_csv import PROVENANCE_COLUMNS

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;
max-width:1400px;padding:0 1em;color:#1b1f24}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-variant-numeric:tabular-nums}
th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.text{text-align:left}
thead th{border-bottom:2px solid #444;cursor:pointer;user-select:none;position:relative}
thead th[aria-sort=ascending]::after{content:" ▲"}
thead th[aria-sort=descending]::after{content:" ▼"}
tr.published td{font-style:italic;color:#555;background:#f6f8fa}
tr.failed td{color:#b42318}
td.best{font-weight:700}td .overlap{color:#6941c6}
.scroll{overflow-x:auto;max-width:100%}.note{color:#555}.warn{color:#b54708}
figure{display:inline-block;margin:.5em 1em .5em 0;max-width:100%}
figure img{max-width:100%;height:auto}
details{margin:1em 0}code{font-size:.9em}
"""

# Sorts a table by the clicked header: numbers by value, text alphabetically; empty
# cells stay at the bottom in both directions.
JS = """
(function () {
  function key(cell, numeric) {
    var raw = cell.getAttribute('data-sort');
    if (raw === null) raw = cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    var value = parseFloat(raw);
    return isNaN(value) ? null : value;
  }
  function sortBy(th) {
    var table = th.closest('table');
    var body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute('data-type') === 'num';
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    Array.prototype.forEach.call(th.parentNode.children, function (other) {
      other.removeAttribute('aria-sort');
    });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows).map(function (row, position) {
      return {row: row, position: position, value: key(row.cells[index], numeric)};
    });
    rows.sort(function (a, b) {
      if (a.value === null || a.value === '') {
        return (b.value === null || b.value === '') ? a.position - b.position : 1;
      }
      if (b.value === null || b.value === '') return -1;
      var order = a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
      return (ascending ? order : -order) || a.position - b.position;
    });
    rows.forEach(function (item) { body.appendChild(item.row); });
  }
  document.querySelectorAll('table.sortable thead th').forEach(function (th) {
    th.addEventListener('click', function () { sortBy(th); });
    th.setAttribute('title', 'click to sort');
  });
})();
"""

NUMERIC = {
    "top-1 %": "mean", "n": "n", CI_LABEL: "ci", BEST_LABEL: "best_mean",
    DELTA_LABEL: "delta", P_LABEL: "p_t", "gap closed": "gap",
    "extra params": "extra_params", "train s": "train_s", "vs published": "vs_published",
}  # fmt: skip


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _sort_value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, int | float) else str(value)


def _sort_key(row: Row, name: str) -> Any:
    """The number a column sorts by: paired figures live on ``row.paired``."""
    if name in ("delta", "p_t"):
        diff = row.paired
        if diff is None:
            return None
        return diff.mean if name == "delta" else diff.p_t
    return getattr(row, name)


def _th(label: str, numeric: bool) -> str:
    kind = "num" if numeric else "text"
    return f'<th scope="col" data-type="{kind}">{_e(label)}</th>'


def _board_table(board: Board, index: int) -> str:
    columns = board_columns(board)
    head = "".join(_th(c, c in NUMERIC) for c in columns)
    body = []
    for row in board.rows:
        body.append(_board_row(board, row, columns))
    return (
        f'<div class="scroll"><table class="sortable board" id="board-{index}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _board_row(board: Board, row: Row, columns: list[str]) -> str:
    cells = board_cells(board, row)
    classes = [row.kind] + (["failed"] if row.failed else []) + (["best"] if row.best else [])
    tds = []
    for column in columns:
        text = _e(cells.values[column])
        attrs = ""
        if column in NUMERIC:
            value = _sort_key(row, NUMERIC[column])
            if column == "n" and row.kind == PUBLISHED:
                value = None
            attrs = f' data-sort="{_sort_value(value)}"'
        else:
            attrs = ' class="text"'
        if column == "top-1 %":
            if cells.best:
                attrs += ' class="best"'
            elif cells.overlap:
                text += f' <span class="overlap" title="95% CI overlaps the best">{OVERLAP}</span>'
        if column == "status" and row.errors:
            attrs += f' title="{_e("; ".join(row.errors))}"'
        tds.append(f"<td{attrs}>{text}</td>")
    return (
        f'<tr class="{" ".join(classes)}" data-method="{_e(row.method)}" '
        f'data-kind="{row.kind}">{"".join(tds)}</tr>'
    )


def _cross_table(board_set: Leaderboard) -> str:
    cross = board_set.cross
    head = _th("method", False) + "".join(_th(c, True) for c in cross.columns)
    head += _th("avg rank", True)
    rows = [
        '<tr class="teacher"><td>teacher</td>'
        + "".join(
            f'<td data-sort="{_sort_value(cross.teacher[c])}">{num(cross.teacher[c])}</td>'
            for c in cross.columns
        )
        + '<td data-sort="">-</td></tr>'
    ]
    for method in cross.methods:
        tds = [f"<td>{_e(method)}</td>"]
        for column in cross.columns:
            value = cross.top1.get((method, column))
            best = ' class="best"' if cross_is_best(cross, method, column) else ""
            text = _e(cross_cell(cross, method, column))
            tds.append(f'<td data-sort="{_sort_value(value)}"{best}>{text}</td>')
        rank = cross.avg_rank[method]
        tds.append(f'<td data-sort="{_sort_value(rank)}">{_e(avg_rank_text(cross, method))}</td>')
        rows.append(f'<tr class="measured" data-method="{_e(method)}">{"".join(tds)}</tr>')
    for (method, statistic), values in cross.published.items():
        tds = [f"<td>{_e(published_label(method, statistic))}</td>"]
        tds += [
            f'<td data-sort="{_sort_value(values.get(c))}">{num(values.get(c))}</td>'
            for c in cross.columns
        ]
        tds.append('<td data-sort="">-</td>')
        rows.append(f'<tr class="published" data-method="{_e(method)}">{"".join(tds)}</tr>')
    return (
        '<div class="scroll"><table class="sortable cross" id="cross-pair">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _plain_table(rows: list[dict[str, Any]], columns: list[str], table_id: str) -> str:
    numeric = {"records", "failed", "seed", "threads"}
    head = "".join(_th(c, c in numeric) for c in columns)
    body = []
    for row in rows:
        tds = "".join(
            f'<td data-sort="{_e(_sort_value(row.get(c)))}">{_e(show(row.get(c)))}</td>'
            if c in numeric
            else f'<td class="text">{_e(show(row.get(c)))}</td>'
            for c in columns
        )
        body.append(f"<tr>{tds}</tr>")
    return (
        f'<div class="scroll"><table class="sortable" id="{table_id}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def show(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _img(fig: Figure, alt: str, colors: dict[str, str]) -> str:
    """A figure as an embedded PNG; ``data-colors`` names the colour of each method drawn
    (the same in every figure of the page)."""
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    drawn = {m: to_hex(colors[m]) for m in shown_methods(fig) if m in colors}
    return (
        f'<figure data-colors="{_e(json.dumps(drawn, sort_keys=True))}">'
        f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}"></figure>'
    )


def page(board_set: Leaderboard, figs: dict[str, Figure] | None = None) -> str:
    """The whole page; ``figs`` (:func:`kdbench.reporting.plots.figures`) are embedded as PNG."""
    figs = figs or {}
    colors = method_colors(board_set)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        "<title>kdbench leaderboard</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>kdbench leaderboard</h1>",
        f"<p>{_e(summary_line(board_set))}</p>",
    ]
    if board_set.boards:
        links = "".join(
            f'<li><a href="#pair-{i}">{_e(b.title)}</a></li>'
            for i, b in enumerate(board_set.boards)
        )
        parts.append(f"<nav><ul>{links}</ul></nav>")
    for i, board in enumerate(board_set.boards):
        parts += [
            f'<section id="pair-{i}"><h2>{_e(board.title)}</h2>',
            f'<p class="note">{_e(teacher_line(board))}</p>',
            f'<p class="note cost">{_e(cost_line(board))}</p>',
            _board_table(board, i),
        ]
        tuned = tuning_lines(board)
        if tuned:
            items = "".join(f"<li>{_e(line)}</li>" for line in tuned)
            parts.append(f'<p class="note">Tuned:</p><ul class="note tuned">{items}</ul>')
        fails = failures(board)
        if fails:
            items = "".join(f"<li>{_e(f)}</li>" for f in fails)
            parts.append(f'<details><summary>failures ({len(fails)})</summary><ul>{items}</ul>'
                         "</details>")  # fmt: skip
        for stem, alt in (
            (f"bars_{slug(board.title)}", "top-1 per method"),
            (f"curves_{slug(board.title)}", "training curves"),
            (f"sensitivity_{slug(board.title)}", "tuning sensitivity"),
        ):
            if stem in figs:
                parts.append(_img(figs[stem], f"{alt}, {board.title}", colors))
        parts.append("</section>")
    if len(board_set.boards) > 1:
        parts += ["<h2>All pairs: top-1 % (rank in pair)</h2>", _cross_table(board_set)]
    scatter = [(k, f) for k, f in figs.items() if not k.startswith(PER_PAIR)]
    if scatter:
        parts.append("<h2>Accuracy against cost</h2>")
        parts += [_img(f, k.replace("_", " "), colors) for k, f in scatter]
    items = "".join(f"<li>{_e(n)}</li>" for n in notes(board_set))
    parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
    if board_set.warnings:
        items = "".join(f'<li class="warn">{_e(w)}</li>' for w in board_set.warnings)
        parts.append(f"<h2>Warnings</h2><ul>{items}</ul>")
    parts += [
        "<h2>Provenance</h2>",
        "<p>One row per run: records that share a results folder, benchmark configuration "
        "hash, code version and machine.</p>",
        _plain_table(board_set.runs, RUN_COLUMNS, "runs"),
        f'<details id="records"><summary>every record ({len(board_set.provenance)})</summary>',
        _plain_table(board_set.provenance, PROVENANCE_COLUMNS, "provenance"),
        "</details>",
        f"<script>{JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
