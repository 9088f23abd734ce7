"""The leaderboard's display model: what every rendering shows, before the markup.

Column labels, notes, the text of each cell (top-1, deltas, p-values, costs) and the
cross-pair cells are decided here once; the renderers (``render_md``, ``render_csv``,
``render_json``, ``render_latex`` and the HTML ``site``) only lay them out. Every format
shows the same numbers from :mod:`kdbench.reporting.leaderboard`. Human formats round
for reading; CSV and JSON keep full precision for tools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kdbench.core.config import BASELINE_LOSS
from kdbench.records.costs import Cost
from kdbench.reporting.board_model import MEASURED, Board, CrossPair, Leaderboard, Row
from kdbench.reporting.published_rows import published_label
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


TUNED_NOTE = (
    "(tuned): the method's setting chosen by the tuning protocol: the same number of trials "
    f"for every method ({BASELINE_LOSS} included) on a validation split held out of the "
    "training split, the best validation top-1 selected, then trained with the benchmark's "
    "seeds on the full training split and tested; the test split chose nothing. Its Δ, p "
    f"and gap closed are against the tuned {BASELINE_LOSS}: both sides had the same budget. "
    "Rows without (tuned) ran their published setting (the file's values, else the loss's "
    "defaults)."
)


def notes(board_set: Leaderboard) -> list[str]:
    """The notes every format prints: the fixed ones, and tuning's where a row is tuned."""
    return [*NOTES, TUNED_NOTE] if board_set.has_tuned else list(NOTES)


def selected_text(selected: dict[str, Any]) -> str:
    """A tuned setting as ``name=value`` pairs, numbers to four significant digits."""
    return ", ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in sorted(selected.items())
    )


def tuning_lines(board: Board) -> list[str]:
    """One line per tuned row: its budget, its selection and the validation scores."""
    lines = []
    for row in board.tuned:
        tuning = row.tuning
        assert tuning is not None
        published = tuning.published_val_top1
        versus = "" if is_nan(published) else f"; published setting {published:.2f} %"
        pruned = sum(t.status == "pruned" for t in tuning.ran)
        ran = f"{len(tuning.ran)} ran" + (f", {pruned} pruned" if pruned else "")
        lines.append(
            f"{row.label}: {tuning.summary} ({ran}); selected "
            f"{selected_text(tuning.selected) or 'the published setting (nothing searched)'}"
            f" (validation top-1 {tuning.selected_val_top1:.2f} %{versus})"
        )
    return lines


def is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def num(value: Any, fmt: str = "{:.2f}", empty: str = "-") -> str:
    """A number for people, or ``empty`` where it is undefined."""
    return empty if is_nan(value) else fmt.format(value)


def mflops(flops: float) -> str:
    """FLOPs per image in millions, keeping small models' figures readable."""
    if is_nan(flops):
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
    if is_nan(row.mean):
        return "-"
    return num(row.mean) if is_nan(row.std) else f"{row.mean:.2f} ± {row.std:.2f}"


def best_text(row: Row) -> str:
    """The test-selected best-epoch figure, with how many seeds it covers when not all."""
    if row.kind != MEASURED or row.best_n == 0:
        return "-"
    text = num(row.best_mean) if row.best_n < 2 else f"{row.best_mean:.2f} ± {row.best_std:.2f}"
    return text if row.best_n == row.n else f"{text} (n={row.best_n})"


def vs_published_text(row: Row) -> str:
    """Measured minus published, naming the measured figure compared."""
    if is_nan(row.vs_published):
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
    text = f"{diff.mean:+.2f}" if is_nan(diff.ci) else f"{diff.mean:+.2f} ± {diff.ci:.2f}"
    if diff.n != row.n:
        text += f" (n={diff.n})"
    return f"{text} {BETTER}" if row.better else text


def p_text(row: Row) -> str:
    diff = row.paired
    if row.kind != MEASURED or diff is None or is_nan(diff.p_t):
        return "-"
    return f"{_p(diff.p_t)} / {_p(diff.p_wilcoxon)}"


def _p(value: float) -> str:
    if is_nan(value):
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
    if not is_nan(cost.p50_ms):
        spread = [f"IQR {cost.p50_iqr_ms:.3f}"] if not is_nan(cost.p50_iqr_ms) else []
        low, high = cost.p50_ci_ms
        if not (is_nan(low) or is_nan(high)):
            spread.append(f"95% CI of median {low:.3f}-{high:.3f}")
        text = f"batch-1 p50 {cost.p50_ms:.3f} ms"
        parts.append(f"{text} ({', '.join(spread)})" if spread else text)
    if not is_nan(cost.p99_ms):
        parts.append(f"p99 {cost.p99_ms:.3f} ms")
    if not is_nan(cost.throughput):
        iqr = "" if is_nan(cost.throughput_iqr) else f" (IQR {cost.throughput_iqr:,.0f})"
        parts.append(f"{cost.throughput:,.0f} img/s{iqr}")
    if not is_nan(cost.params):
        parts.append(f"{cost.params:,.0f} params")
    if not is_nan(cost.flops):
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
    tuned = "" if is_nan(board.tuned_baseline) else f" (tuned: {board.tuned_baseline:.2f} %)"
    parts.append(f"{BASELINE_LOSS} baseline: {num(board.baseline)} %{tuned}")
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
    if is_nan(cross.top1[key]):
        return "failed" if cross.status[key] == "failed" else "-"
    return f"{cross.top1[key]:.2f} ({cross.rank[key]:g})"


def cross_is_best(cross: CrossPair, method: str, column: str) -> bool:
    value = cross.top1.get((method, column), math.nan)
    return not is_nan(value) and value == cross.best[column]


def avg_rank_text(cross: CrossPair, method: str) -> str:
    rank = cross.avg_rank[method]
    if is_nan(rank):
        return "-"
    total = len(cross.columns)
    n = cross.n_ranked[method]
    return f"{rank:.2f}" if n == total else f"{rank:.2f} ({n}/{total} pairs)"


# Markdown ------------------------------------------------------------------------------


def summary_line(board_set: Leaderboard) -> str:
    records = len(board_set.provenance)
    failed = sum(r["status"] != "ok" for r in board_set.provenance)
    return (
        f"{records} records ({failed} failed) in {len(board_set.runs)} run(s), "
        f"{len(board_set.boards)} pair(s)."
    )


RUN_COLUMNS = [
    "folder", "benchmark", "config_hash", "records", "failed", "kdbench", "git", "python",
    "torch", "cuda", "device", "platform", "first_finished", "last_finished",
]  # fmt: skip


def show(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


# CSV and JSON --------------------------------------------------------------------------


# LaTeX ---------------------------------------------------------------------------------
