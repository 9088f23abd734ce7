"""A leaderboard as text: Markdown, CSV, JSON and LaTeX (HTML: :mod:`kdbench.reporting.site`).

Every format shows the same numbers from :mod:`kdbench.reporting.leaderboard`; only the markup
differs. Human formats round for reading; CSV and JSON keep full precision for tools.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from kdbench.core.config import BASELINE_LOSS
from kdbench.records.costs import Cost
from kdbench.reporting.leaderboard import (
    MEASURED,
    PUBLISHED,
    Board,
    CrossPair,
    Leaderboard,
    Row,
    published_label,
)
from kdbench.reporting.reference import BEST, LAST
from kdbench.reporting.stats import CONFIDENCE

OVERLAP = "†"
TEST_SELECTED = "‡"
BETTER = "▲"
CI_LABEL = f"{CONFIDENCE:.0%} CI ±"
BEST_LABEL = f"best{TEST_SELECTED} % (test-selected)"
DELTA_LABEL = f"Δ vs {BASELINE_LOSS} (paired)"
P_LABEL = "p (t / W)"

NOTES = [
    "top-1 %: last-epoch test accuracy, mean ± sample std over the n seeds that finished; "
    "it alone sorts, ranks and picks the best (bold) method.",
    f"{BEST_LABEL}: each seed's highest test accuracy over its evaluated epochs (every "
    "eval_every epochs and the last), mean ± std; the epoch is chosen by looking at the "
    "test split, so the figure is optimistic and only for comparison with sources that "
    "publish it; (n=k): only k seeds have it; - : records without per-epoch accuracy.",
    f"{CI_LABEL}: half-width of the {CONFIDENCE:.0%} confidence interval of the mean "
    "(Student t, n - 1 degrees of freedom); none for n < 2.",
    f"{OVERLAP}: this method's interval overlaps the best method's (bold) interval: "
    "the two are not distinguishable at this number of seeds.",
    f"{DELTA_LABEL}: mean over the seeds both share of (method - {BASELINE_LOSS}) of the "
    f"same seed, ± the {CONFIDENCE:.0%} t interval of that mean; every method runs the "
    "baseline's seeds, so the comparison is paired (same initialisation and data order).",
    f"{P_LABEL}: two-sided p of the paired t-test / of the Wilcoxon signed-rank test on the "
    "per-seed differences (- where n < 2 or all differences are equal; with 5 seeds or "
    f"fewer the Wilcoxon p cannot go below 0.0625). {BETTER}: better than {BASELINE_LOSS} "
    f"by the paired t-test at p < {1 - CONFIDENCE:.2f}; only these are called better.",
    f"gap closed: (method - {BASELINE_LOSS}) / (teacher - {BASELINE_LOSS}); 100 % matches "
    "the teacher; blank when the teacher is not better than the baseline.",
    "student cost (the line under each pair's title): every method trains the same "
    "network, so latency, throughput, parameters and FLOPs belong to the architecture and "
    "device, measured once and shown once: batch-1 p50 latency with its interquartile range "
    "(IQR) and the 95 % interval of the median over the timed calls, p99, throughput at a "
    "large batch (median, IQR), parameters, MFLOPs (forward FLOPs per image / 1e6, 2 per "
    "multiply-add). Records made before per-architecture measurement carry one measurement "
    "per cell: they are shown as the median over the student's cells, flagged (per-cell), "
    "with the IQR across cells.",
    "extra params: trainable parameters the distiller adds during training.",
    "train s: mean training wall time per cell (a lockstep group's time shared among its cells).",
    "published rows are figures from the cited source, never part of any mean, rank or "
    f"best, named with the epoch their source reports ({LAST}: the last; {BEST}: the best "
    "test epoch, test-selected; unstated: not said); vs published = measured mean of the "
    f"same kind - published figure: top-1 for {LAST}, best{TEST_SELECTED} for {BEST}, none "
    "for unstated.",
    "failed cells are counted in status and never dropped; missing seeds are seeds other "
    "methods of the pair have that this one lacks.",
]


def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def num(value: Any, fmt: str = "{:.2f}", empty: str = "-") -> str:
    """A number for people, or ``empty`` where it is undefined."""
    return empty if _isnan(value) else fmt.format(value)


def mflops(flops: float) -> str:
    """FLOPs per image in millions, keeping small models' figures readable."""
    if _isnan(flops):
        return "-"
    value = flops / 1e6
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


@dataclass
class Cells:
    """A row as display strings, with what a format may emphasise."""

    kind: str
    method: str
    top1: str
    best: bool
    overlap: bool
    values: dict[str, str]
    source: str = ""


METHOD_COLUMNS = [
    "method", "top-1 %", "n", CI_LABEL, BEST_LABEL, DELTA_LABEL, P_LABEL, "gap closed",
    "extra params", "train s", "status",
]  # fmt: skip


def board_columns(board: Board) -> list[str]:
    columns = list(METHOD_COLUMNS)
    if board.has_published:
        columns += ["vs published", "source"]
    return columns


def top1_text(row: Row) -> str:
    if row.failed:
        return "failed"
    if _isnan(row.mean):
        return "-"
    return num(row.mean) if _isnan(row.std) else f"{row.mean:.2f} ± {row.std:.2f}"


def best_text(row: Row) -> str:
    """The test-selected best-epoch figure, with how many seeds it covers when not all."""
    if row.kind != MEASURED or row.best_n == 0:
        return "-"
    text = num(row.best_mean) if row.best_n < 2 else f"{row.best_mean:.2f} ± {row.best_std:.2f}"
    return text if row.best_n == row.n else f"{text} (n={row.best_n})"


def vs_published_text(row: Row) -> str:
    """Measured minus published, naming the measured figure compared."""
    if _isnan(row.vs_published):
        return "-"
    kind = f"best{TEST_SELECTED}" if row.vs_statistic == BEST else row.vs_statistic
    return f"{row.vs_published:+.2f} ({kind})"


def delta_text(row: Row) -> str:
    """The paired difference from the baseline ± its interval, marked where better."""
    if row.kind != MEASURED:
        return "-"
    if row.method == BASELINE_LOSS:
        return "baseline"
    diff = row.paired
    if diff is None or diff.n == 0:
        return "-"
    text = f"{diff.mean:+.2f}" if _isnan(diff.ci) else f"{diff.mean:+.2f} ± {diff.ci:.2f}"
    if diff.n != row.n:
        text += f" (n={diff.n})"
    return f"{text} {BETTER}" if row.better else text


def p_text(row: Row) -> str:
    diff = row.paired
    if row.kind != MEASURED or diff is None or _isnan(diff.p_t):
        return "-"
    return f"{_p(diff.p_t)} / {_p(diff.p_wilcoxon)}"


def _p(value: float) -> str:
    if _isnan(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def cost_line(board: Board) -> str:
    """The student's (and teacher's) inference cost, once per device: it is the
    architecture's, not a method's."""
    parts = [f"student {board.student} on {c.device}: {cost_text(c)}" for c in board.costs]
    parts += [f"teacher {board.teacher} on {c.device}: {cost_text(c)}" for c in board.teacher_costs]
    return "; ".join(parts) or f"student {board.student}: no cost measured"


def cost_text(cost: Cost) -> str:
    """One architecture's cost on one device, with its spread and how it was measured."""
    if cost.missing:
        return f"its cost file costs/{cost.key}.json is missing or unreadable"
    parts = []
    if not _isnan(cost.p50_ms):
        spread = [f"IQR {cost.p50_iqr_ms:.3f}"] if not _isnan(cost.p50_iqr_ms) else []
        low, high = cost.p50_ci_ms
        if not (_isnan(low) or _isnan(high)):
            spread.append(f"95% CI of median {low:.3f}-{high:.3f}")
        text = f"batch-1 p50 {cost.p50_ms:.3f} ms"
        parts.append(f"{text} ({', '.join(spread)})" if spread else text)
    if not _isnan(cost.p99_ms):
        parts.append(f"p99 {cost.p99_ms:.3f} ms")
    if not _isnan(cost.throughput):
        iqr = "" if _isnan(cost.throughput_iqr) else f" (IQR {cost.throughput_iqr:,.0f})"
        parts.append(f"{cost.throughput:,.0f} img/s{iqr}")
    if not _isnan(cost.params):
        parts.append(f"{cost.params:,.0f} params")
    if not _isnan(cost.flops):
        parts.append(f"{mflops(cost.flops)} MFLOPs")
    if cost.per_cell:
        parts.append(f"(per-cell) median of {cost.measurements} cells' own measurements, "
                     "IQR across cells")  # fmt: skip
    else:
        parts.append("measured once for the architecture")
    return ", ".join(parts)


def board_cells(board: Board, row: Row) -> Cells:
    """The display strings of one row, in :func:`board_columns` order."""
    measured = row.kind == MEASURED
    label = row.label if measured else published_label(row.method, row.statistic)
    values = {
        "method": label,
        "top-1 %": top1_text(row),
        "n": str(row.n) if measured else "-",
        CI_LABEL: num(row.ci) if measured else "-",
        BEST_LABEL: best_text(row),
        DELTA_LABEL: delta_text(row),
        P_LABEL: p_text(row),
        "gap closed": num(row.gap * 100, "{:.0f} %")
        if measured and row.method != BASELINE_LOSS
        else "-",
        "extra params": num(row.extra_params, "{:,.0f}"),
        "train s": num(row.train_s, "{:.1f}"),
        "status": row.status,
    }
    if board.has_published:
        values["vs published"] = vs_published_text(row) if measured else "-"
        values["source"] = row.source if not measured else "measured"
    return Cells(
        kind=row.kind,
        method=label,
        top1=values["top-1 %"],
        best=row.best,
        overlap=bool(row.overlaps_best),
        values=values,
        source=row.source,
    )


def teacher_line(board: Board) -> str:
    parts = [f"teacher {board.teacher}: {num(board.teacher_top1)} % top-1"]
    pub = board.teacher_published
    if pub is not None:  # the teacher's measured figure is its final weights': last epoch
        diff = board.teacher_top1 - pub.top1 if pub.statistic == LAST else math.nan
        parts.append(
            f"published {pub.top1:.2f} % ({pub.statistic}; {pub.source}; measured - published "
            f"{num(diff, '{:+.2f}')})"
        )
    parts.append(f"{BASELINE_LOSS} baseline: {num(board.baseline)} %")
    parts.append(f"seeds: {', '.join(map(str, board.seeds)) or '-'}")
    if board.teacher_top1 < board.baseline:  # NaN compares False: no flag without numbers
        parts.append("(!) the teacher is less accurate than the student's baseline")
    return "; ".join(parts)


def failures(board: Board) -> list[str]:
    return [f"{row.label} {error}" for row in board.measured for error in row.errors]


def cross_cell(cross: CrossPair, method: str, column: str) -> str:
    key = (method, column)
    if key not in cross.top1:
        return "-"
    if _isnan(cross.top1[key]):
        return "failed" if cross.status[key] == "failed" else "-"
    return f"{cross.top1[key]:.2f} ({cross.rank[key]:g})"


def cross_is_best(cross: CrossPair, method: str, column: str) -> bool:
    value = cross.top1.get((method, column), math.nan)
    return not _isnan(value) and value == cross.best[column]


def avg_rank_text(cross: CrossPair, method: str) -> str:
    rank = cross.avg_rank[method]
    if _isnan(rank):
        return "-"
    total = len(cross.columns)
    n = cross.n_ranked[method]
    return f"{rank:.2f}" if n == total else f"{rank:.2f} ({n}/{total} pairs)"


# Markdown ------------------------------------------------------------------------------


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
        fails = failures(board)
        if fails:
            out += ["", "Failures:", *[f"- {_md_escape(f)}" for f in fails]]
        out.append("")
    if len(board_set.boards) > 1:
        out += ["## All pairs: top-1 % (rank in pair)", "", _md_cross(board_set.cross), ""]
    out += ["## Notes", "", *[f"- {n}" for n in NOTES], ""]
    if board_set.warnings:
        out += ["## Warnings", "", *[f"- {_md_escape(w)}" for w in board_set.warnings], ""]
    out += ["## Provenance", "", _md_runs(board_set), ""]
    return "\n".join(out)


def summary_line(board_set: Leaderboard) -> str:
    records = len(board_set.provenance)
    failed = sum(r["status"] != "ok" for r in board_set.provenance)
    return (
        f"{records} records ({failed} failed) in {len(board_set.runs)} run(s), "
        f"{len(board_set.boards)} pair(s)."
    )


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


RUN_COLUMNS = [
    "folder", "benchmark", "config_hash", "records", "failed", "kdbench", "git", "python",
    "torch", "cuda", "device", "platform", "first_finished", "last_finished",
]  # fmt: skip


def _show(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _md_runs(board_set: Leaderboard) -> str:
    rows = [[_md_escape(_show(run.get(c))) for c in RUN_COLUMNS] for run in board_set.runs]
    return tabulate(rows, headers=RUN_COLUMNS, tablefmt="github", disable_numparse=True)


# CSV and JSON --------------------------------------------------------------------------

CSV_COLUMNS = [
    "dataset", "teacher", "student", "variant", "kind", "method", "status", "n", "n_failed",
    "seeds", "missing_seeds", "statistic", "top1_mean", "top1_std", "ci95", "top5_mean",
    "best_top1_test_selected_mean", "best_top1_test_selected_std", "best_top1_test_selected_n",
    "best_epoch_mean", "delta_vs_baseline", "paired_n", "paired_delta", "paired_ci95",
    "paired_t_p", "wilcoxon_p", "better_than_baseline", "gap_recovered", "best",
    "ci_overlaps_best", "p50_ms", "p50_iqr_ms", "throughput_img_s", "throughput_iqr_img_s",
    "params", "flops_per_image", "cost_device", "cost_measurements", "extra_params",
    "train_seconds",
    "step_ms", "teacher_top1", "baseline_top1", "published_top1", "vs_published",
    "vs_published_statistic", "source",
]  # fmt: skip


def row_record(board: Board, row: Row) -> dict[str, Any]:
    """A row as plain data (full precision, None where undefined) for CSV and JSON."""
    measured = row.kind == MEASURED
    diff = row.paired
    cost = board.cost if measured else None
    data = {
        "dataset": board.dataset,
        "teacher": board.teacher,
        "student": board.student,
        "variant": board.variant,
        "kind": row.kind,
        "method": row.label,
        "status": row.status,
        "n": row.n if measured else None,
        "n_failed": row.n_failed if measured else None,
        "seeds": row.seeds,
        "missing_seeds": row.missing_seeds,
        "statistic": row.statistic,
        "top1_mean": row.mean,
        "top1_std": row.std,
        "ci95": row.ci,
        "top5_mean": row.top5,
        "best_top1_test_selected_mean": row.best_mean,
        "best_top1_test_selected_std": row.best_std,
        "best_top1_test_selected_n": row.best_n if measured else None,
        "best_epoch_mean": row.best_epoch,
        "delta_vs_baseline": row.delta,
        "paired_n": diff.n if diff else None,
        "paired_delta": diff.mean if diff else None,
        "paired_ci95": diff.ci if diff else None,
        "paired_t_p": diff.p_t if diff else None,
        "wilcoxon_p": diff.p_wilcoxon if diff else None,
        "better_than_baseline": row.better,
        "gap_recovered": row.gap,
        "best": row.best if measured else None,
        "ci_overlaps_best": row.overlaps_best,
        "p50_ms": cost.p50_ms if cost else math.nan,
        "p50_iqr_ms": cost.p50_iqr_ms if cost else None,
        "throughput_img_s": cost.throughput if cost else math.nan,
        "throughput_iqr_img_s": cost.throughput_iqr if cost else None,
        "params": cost.params if cost else math.nan,
        "flops_per_image": cost.flops if cost else math.nan,
        "cost_device": cost.device if cost else None,
        "cost_measurements": (
            None if cost is None else f"{cost.measurements} per-cell" if cost.per_cell else "1"
        ),
        "extra_params": row.extra_params,
        "train_seconds": row.train_s,
        "step_ms": row.step_ms,
        "teacher_top1": board.teacher_top1,
        "baseline_top1": board.baseline,
        "published_top1": row.published,
        "vs_published": row.vs_published,
        "vs_published_statistic": row.vs_statistic or None,
        "source": row.source,
        "errors": row.errors,
        "cells": row.cells,
    }
    return {k: None if _isnan(v) else v for k, v in data.items()}


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return repr(value)
    return value


def leaderboard_csv(board_set: Leaderboard) -> str:
    """Every row of every pair, measured and published (told apart by ``kind``)."""
    rows = [row_record(b, r) for b in board_set.boards for r in b.rows]
    return _csv(rows, CSV_COLUMNS)


def cost_record(cost: Cost) -> dict[str, Any]:
    """An architecture's cost as plain data (None where undefined)."""
    data = dataclasses.asdict(cost)
    data["p50_ci_ms"] = [None if _isnan(v) else v for v in cost.p50_ci_ms]
    return {k: None if _isnan(v) else v for k, v in data.items()}


def cross_pair_records(cross: CrossPair) -> list[dict[str, Any]]:
    out = []
    for method in cross.methods:
        for column in cross.columns:
            key = (method, column)
            if key not in cross.top1:
                continue
            out.append(
                {
                    "method": method,
                    "pair": column,
                    "top1_mean": None if _isnan(cross.top1[key]) else cross.top1[key],
                    "status": cross.status[key],
                    "rank": cross.rank.get(key),
                    "avg_rank": None if _isnan(cross.avg_rank[method]) else cross.avg_rank[method],
                    "pairs_ranked": cross.n_ranked[method],
                }
            )
    return out


def cross_pair_csv(board_set: Leaderboard) -> str:
    columns = ["method", "pair", "top1_mean", "status", "rank", "avg_rank", "pairs_ranked"]
    return _csv(cross_pair_records(board_set.cross), columns)


PROVENANCE_COLUMNS = [
    "cell_id", "dataset", "pair", "method", "seed", "status", "benchmark", "config_hash",
    "kdbench", "git", "python", "torch", "cuda", "device", "threads", "platform",
    "dataset_fingerprint", "finished_at", "path",
]  # fmt: skip


def provenance_csv(board_set: Leaderboard) -> str:
    return _csv(board_set.provenance, PROVENANCE_COLUMNS)


def to_json(board_set: Leaderboard) -> str:
    """Everything, for tools: pairs with rows, the cross-pair matrix, runs, warnings."""
    cross = board_set.cross
    data = {
        "format": "kdbench-leaderboard/1",
        "confidence": CONFIDENCE,
        "notes": NOTES,
        "pairs": [
            {
                "dataset": b.dataset,
                "teacher": b.teacher,
                "student": b.student,
                "variant": b.variant,
                "title": b.title,
                "teacher_top1": None if _isnan(b.teacher_top1) else b.teacher_top1,
                "teacher_published": None
                if b.teacher_published is None
                else {"top1": b.teacher_published.top1, "source": b.teacher_published.source},
                "baseline_top1": None if _isnan(b.baseline) else b.baseline,
                "seeds": b.seeds,
                "student_costs": [cost_record(c) for c in b.costs],
                "teacher_costs": [cost_record(c) for c in b.teacher_costs],
                "rows": [row_record(b, r) for r in b.rows],
            }
            for b in board_set.boards
        ],
        "cross_pair": {
            "pairs": cross.columns,
            "methods": [
                {
                    "method": m,
                    "avg_rank": None if _isnan(cross.avg_rank[m]) else cross.avg_rank[m],
                    "pairs_ranked": cross.n_ranked[m],
                }
                for m in cross.methods
            ],
            "cells": cross_pair_records(cross),
            "teacher": {c: None if _isnan(v) else v for c, v in cross.teacher.items()},
        },
        "runs": board_set.runs,
        "provenance": board_set.provenance,
        "warnings": board_set.warnings,
    }
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# LaTeX ---------------------------------------------------------------------------------

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
