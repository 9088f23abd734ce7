"""Figures of a leaderboard: accuracy against cost (with the Pareto front) and per-pair bars.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (Agg for PNG,
the SVG backend for SVG), never through pyplot, so reporting changes no global backend
and works without a display.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter

from kdbench.formats import TEST_SELECTED
from kdbench.leaderboard import PUBLISHED, Board, Leaderboard
from kdbench.records import atomic_path
from kdbench.reference import BEST, LAST, UNSTATED
from kdbench.stats import pareto_front

MARKERS = "osD^v<>pPX*h"
AXES = {
    "latency": ("p50_ms", "batch-1 p50 latency (ms, log scale)"),
    "params": ("params", "parameters (log scale)"),
}
SVG_META = {"Date": None}


@dataclass(frozen=True)
class Point:
    """One (student, method) of a dataset: seed mean and std against a cost."""

    student: str
    method: str
    cost: float
    mean: float
    std: float


def slug(text: str) -> str:
    """A file-name-safe form of a title."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("→", "to")).strip("-").lower()


def points(board_set: Leaderboard, dataset: str, axis: str) -> list[Point]:
    """Each (student, method) once; a method is named with its teacher where a student
    has several teachers, since those are different points."""
    field = AXES[axis][0]
    boards = [b for b in board_set.boards if b.dataset == dataset]
    teachers: dict[str, set[str]] = {}
    for board in boards:
        teachers.setdefault(board.student, set()).add(board.pair)
    seen: set[tuple[str, str]] = set()
    out = []
    for board in boards:
        for row in board.measured:
            if row.n == 0:
                continue
            method = row.method
            if not row.shared and len(teachers[board.student]) > 1:
                method = f"{row.method} ({board.teacher})"
            if (board.student, method) in seen:
                continue
            seen.add((board.student, method))
            std = 0.0 if math.isnan(row.std) else row.std
            out.append(Point(board.student, method, getattr(row, field), row.mean, std))
    return out


def scatter(board_set: Leaderboard, dataset: str, axis: str) -> Figure | None:
    """Accuracy against latency or parameters; None when nothing has that cost."""
    pts = [p for p in points(board_set, dataset, axis) if not math.isnan(p.cost) and p.cost > 0]
    if not pts:
        return None
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    methods = sorted({p.method for p in pts})
    students = sorted({p.student for p in pts})
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(students)}
    for p in pts:
        ax.errorbar(
            p.cost, p.mean, yerr=p.std, fmt=markers[p.student], color=colors[p.method],
            markersize=7, capsize=3, linestyle="none",
        )  # fmt: skip
    front = [pts[i] for i in pareto_front([(p.cost, p.mean) for p in pts])]
    ax.plot([p.cost for p in front], [p.mean for p in front], "--", color="0.4", lw=1, zorder=0)
    ax.set_xscale("log")
    # Plain numbers on the log axis: 1.2 ms and 1.2M parameters, not 1.2x10^0.
    fmt = EngFormatter(sep="") if axis == "params" else FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(fmt)
    ax.xaxis.set_minor_formatter(fmt)
    ax.set_xlabel(AXES[axis][1])
    ax.set_ylabel("top-1 % (mean ± std over seeds)")
    ax.set_title(f"{dataset}: accuracy vs {axis}")
    ax.grid(True, alpha=0.3)
    handles = [ax.plot([], [], "s", color=colors[m], label=m)[0] for m in methods] + [
        ax.plot([], [], markers[s], color="0.3", label=f"student {s}")[0] for s in students
    ]
    handles.append(ax.plot([], [], "--", color="0.4", label="Pareto front")[0])
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return fig


def bars(board: Board) -> Figure:
    """Per-method top-1 of one pair with 95 % CI whiskers, baseline and teacher lines."""
    rows = [r for r in board.measured]
    fig = Figure(figsize=(max(5.0, 0.8 * len(rows) + 3), 4.2), layout="constrained")
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    means = [r.mean if r.n else 0.0 for r in rows]
    errors = [0.0 if math.isnan(r.ci) else r.ci for r in rows]
    colors = ["C1" if r.best else "C0" for r in rows]
    ax.bar(xs, means, yerr=errors, color=colors, capsize=4, label="measured (±95 % CI)")
    published = {r.method: r for r in board.rows if r.kind == PUBLISHED and not math.isnan(r.mean)}
    pub = {x: published[r.method] for x, r in zip(xs, rows, strict=True) if r.method in published}
    for statistic, marker, label in (
        (LAST, "kx", "published (last epoch)"),
        (BEST, "k+", f"published (best epoch: compare best{TEST_SELECTED})"),
        (UNSTATED, "k.", "published (epoch unstated)"),
    ):
        pub_x = [x for x, r in pub.items() if r.statistic == statistic]
        if pub_x:
            ax.plot(pub_x, [pub[x].mean for x in pub_x], marker,
                    markersize=9, label=label)  # fmt: skip
    best_x = [x for x, r in zip(xs, rows, strict=True) if r.best_n]
    if best_x:
        ax.plot(best_x, [rows[x].best_mean for x in best_x], "_", color="C2", markersize=14,
                label=f"best{TEST_SELECTED} epoch (test-selected)")  # fmt: skip
    if not math.isnan(board.baseline):
        ax.axhline(board.baseline, color="0.3", ls=":", lw=1, label="ce baseline")
    if not math.isnan(board.teacher_top1):
        ax.axhline(board.teacher_top1, color="C3", ls="--", lw=1, label="teacher")
    values = [r.mean - (0 if math.isnan(r.ci) else r.ci) for r in rows if r.n]
    values += [r.mean for r in published.values()]
    values += [v for v in (board.baseline,) if not math.isnan(v)]
    if values:
        top = max(
            [r.mean + (0 if math.isnan(r.ci) else r.ci) for r in rows if r.n]
            + [r.mean for r in published.values()]
            + [r.best_mean for r in rows if r.best_n]
            + [v for v in (board.teacher_top1,) if not math.isnan(v)]
        )
        low = min(values)
        margin = max(0.5, 0.15 * (top - low))
        ax.set_ylim(max(0.0, low - margin), min(100.0, top + margin))
    for x, r in zip(xs, rows, strict=True):
        if r.n == 0:
            ax.text(x, ax.get_ylim()[0], "failed", rotation=90, ha="center", va="bottom",
                    color="C3")  # fmt: skip
    ax.set_xticks(xs, [r.label for r in rows], rotation=30, ha="right")
    ax.set_ylabel("top-1 % (y axis does not start at 0)")
    ax.set_title(board.title, fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def figures(board_set: Leaderboard) -> dict[str, Figure]:
    """Every figure of a leaderboard by file stem."""
    out: dict[str, Figure] = {}
    for dataset in sorted({b.dataset for b in board_set.boards}):
        for axis in AXES:
            fig = scatter(board_set, dataset, axis)
            if fig is not None:
                out[f"{slug(dataset)}_accuracy_vs_{axis}"] = fig
    for board in board_set.boards:
        out[f"bars_{slug(board.title)}"] = bars(board)
    return out


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_plots(folder: Path, figs: dict[str, Figure]) -> list[Path]:
    """PNG (for pages and slides) and SVG (for papers) of every figure."""
    written = []
    for stem, fig in figs.items():
        for ext in ("png", "svg"):
            path = Path(folder) / f"{stem}.{ext}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=150, metadata=SVG_META if ext == "svg" else None)
            written.append(path)
    return written
