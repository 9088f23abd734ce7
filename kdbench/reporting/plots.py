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

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import (
    EngFormatter,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

from kdbench.records.store import atomic_path
from kdbench.reporting.board_model import PUBLISHED, Board, Leaderboard
from kdbench.reporting.formats import TEST_SELECTED
from kdbench.reporting.reference import BEST, LAST, UNSTATED
from kdbench.reporting.stats import pareto_front

MARKERS = "osD^v<>pPX*h"
LINESTYLES = ("-", "--", ":", "-.")
AXES = {
    "latency": ("p50_ms", "batch-1 p50 latency (ms)"),
    "params": ("params", "parameters"),
}
SVG_META = {"Date": None}
TEACHER_STYLE = {"color": "0.1", "ls": "--", "lw": 1}
BASELINE_STYLE = {"color": "0.45", "ls": ":", "lw": 1.2}


@dataclass(frozen=True)
class Point:
    """One (student, method) of a dataset: seed mean and std against its student's cost."""

    student: str
    method: str
    cost: float
    mean: float
    std: float
    color_key: str = ""
    cost_range: tuple[float, float] = (math.nan, math.nan)  # latency: 95 % CI of the median


def slug(text: str) -> str:
    """A file-name-safe form of a title."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("→", "to")).strip("-").lower()


def method_colors(board_set: Leaderboard) -> dict[str, str]:
    """One colour per method for every figure of a report (the best is marked by hatching
    and an outline, never by a colour of its own)."""
    methods = sorted({r.method for b in board_set.boards for r in b.measured})
    palette = [f"C{i}" for i in range(10)]
    if len(methods) > 10:
        cmap = matplotlib.colormaps["tab20"]
        palette = [matplotlib.colors.to_hex(cmap(i)) for i in range(20)]
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def points(board_set: Leaderboard, dataset: str, axis: str) -> list[Point]:
    """Each (student, method) once; a method is named with its teacher where a student
    has several teachers, since those are different points. Every method of a student
    sits at that architecture's one cost."""
    field = AXES[axis][0]
    boards = [b for b in board_set.boards if b.dataset == dataset]
    teachers: dict[str, set[str]] = {}
    for board in boards:
        teachers.setdefault(board.student, set()).add(board.pair)
    seen: set[tuple[str, str]] = set()
    out = []
    for board in boards:
        cost = getattr(board.cost, field, math.nan) if board.cost else math.nan
        spread = board.cost.p50_ci_ms if board.cost and axis == "latency" else (math.nan,) * 2
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
            out.append(Point(board.student, method, cost, row.mean, std, row.method, spread))
    return out


def architecture_front(pts: list[Point]) -> list[Point]:
    """The Pareto front over distinct architectures: each student's best method competes,
    since methods of one student share one cost."""
    best: dict[str, Point] = {}
    for p in pts:
        if p.student not in best or p.mean > best[p.student].mean:
            best[p.student] = p
    tops = list(best.values())
    if len(tops) < 2:
        return []
    return [tops[i] for i in pareto_front([(p.cost, p.mean) for p in tops])]


def _cost_axis(ax, values: list[float], axis: str) -> None:
    """Log scale only across a decade or more; plain labels, major ticks only."""
    fmt = EngFormatter(sep="") if axis == "params" else FuncFormatter(lambda v, _: f"{v:g}")
    if max(values) / min(values) >= 10:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        label = f"{AXES[axis][1]}, log scale"
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        label = AXES[axis][1]
        low, high = min(values), max(values)
        pad = 0.1 * (high - low) if high > low else 0.1 * high
        ax.set_xlim(low - pad, high + pad)
    ax.xaxis.set_major_formatter(fmt)
    ax.set_xlabel(f"{label}; one cost per student architecture")


def scatter(
    board_set: Leaderboard, dataset: str, axis: str, colors: dict[str, str] | None = None
) -> Figure | None:
    """Accuracy against latency or parameters; None when nothing has that cost."""
    pts = [p for p in points(board_set, dataset, axis) if not math.isnan(p.cost) and p.cost > 0]
    if not pts:
        return None
    colors = colors or method_colors(board_set)
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    methods = sorted({p.color_key for p in pts})
    students = sorted({p.student for p in pts})
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(students)}
    for p in pts:
        low, high = p.cost_range
        xerr = None if math.isnan(low) else [[p.cost - low], [high - p.cost]]
        ax.errorbar(
            p.cost, p.mean, yerr=p.std, xerr=xerr, fmt=markers[p.student],
            color=colors[p.color_key], markersize=7, capsize=3, linestyle="none",
        )  # fmt: skip
    front = architecture_front(pts)
    if front:
        ax.plot([p.cost for p in front], [p.mean for p in front], "--o", color="0.4", lw=1,
                mfc="none", markersize=14, zorder=0)  # fmt: skip
    _cost_axis(ax, [p.cost for p in pts], axis)
    ax.set_ylabel("top-1 % (mean ± std over seeds)")
    note = (
        "; x bars: 95 % CI of the median"
        if any(not math.isnan(p.cost_range[0]) for p in pts)
        else ""
    )
    ax.set_title(f"{dataset}: accuracy vs {axis}{note}", fontsize="medium")
    ax.grid(True, alpha=0.3)
    handles = [ax.plot([], [], "s", color=colors[m], label=m)[0] for m in methods] + [
        ax.plot([], [], markers[s], color="0.3", label=f"student {s}")[0] for s in students
    ]
    if front:
        handles.append(ax.plot([], [], "--o", color="0.4", mfc="none", markersize=10,
                               label="Pareto front (across architectures)")[0])  # fmt: skip
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return _showing(fig, methods)


def bars(board: Board, colors: dict[str, str] | None = None) -> Figure:
    """Per-method top-1 of one pair with 95 % CI whiskers, baseline and teacher lines."""
    rows = [r for r in board.measured]
    colors = colors or {r.method: f"C{i % 10}" for i, r in enumerate(sorted(rows, key=_key))}
    fig = Figure(figsize=(max(5.5, 0.7 * len(rows) + 3.5), 4.4), layout="constrained")
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    means = [r.mean if r.n else 0.0 for r in rows]
    errors = [0.0 if math.isnan(r.ci) else r.ci for r in rows]
    drawn = ax.bar(xs, means, yerr=errors, color=[colors[r.method] for r in rows], capsize=4)
    for patch, row in zip(drawn.patches, rows, strict=True):
        if row.best:
            patch.set(hatch="//", edgecolor="black", linewidth=1.5)
    handles = [Patch(facecolor="white", edgecolor="0.3", label="measured (±95 % CI)")]
    if any(r.best for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", linewidth=1.5,
                             label="best (bold in tables)"))  # fmt: skip
    published = {r.method: r for r in board.rows if r.kind == PUBLISHED and not math.isnan(r.mean)}
    pub = {x: published[r.method] for x, r in zip(xs, rows, strict=True) if r.method in published}
    for statistic, marker, label in (
        (LAST, "kx", "published (last epoch)"),
        (BEST, "k+", f"published (best epoch: compare best{TEST_SELECTED})"),
        (UNSTATED, "k.", "published (epoch unstated)"),
    ):
        pub_x = [x for x, r in pub.items() if r.statistic == statistic]
        if pub_x:
            handles += ax.plot(pub_x, [pub[x].mean for x in pub_x], marker,
                               markersize=9, label=label)  # fmt: skip
    best_x = [x for x, r in zip(xs, rows, strict=True) if r.best_n]
    if best_x:
        handles += ax.plot(
            best_x,
            [rows[x].best_mean for x in best_x],
            "_",
            color="0.1",
            markersize=14,
            label=f"best{TEST_SELECTED} epoch (test-selected)",
        )
    if not math.isnan(board.baseline):
        handles.append(ax.axhline(board.baseline, label="ce baseline", **BASELINE_STYLE))
    if not math.isnan(board.teacher_top1):
        handles.append(ax.axhline(board.teacher_top1, label="teacher", **TEACHER_STYLE))
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
                    color="0.1")  # fmt: skip
    ax.set_xticks(xs, [r.label for r in rows], rotation=30, ha="right", fontsize="small")
    truncated = ax.get_ylim()[0] > 0
    ax.set_ylabel("top-1 %" + (" (y axis does not start at 0)" if truncated else ""))
    ax.set_title(board.title, fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return _showing(fig, [r.method for r in rows if r.n])


def _showing(fig: Figure, methods: list[str]) -> Figure:
    """Note which methods a figure draws, so a page can state their colours beside it."""
    fig.kdbench_methods = sorted(set(methods))  # type: ignore[attr-defined]
    return fig


def shown_methods(fig: Figure) -> list[str]:
    """The methods a figure of this module draws, each in its report-wide colour."""
    return list(getattr(fig, "kdbench_methods", []))


def _key(row) -> str:
    return row.method


def training_curves(board: Board, colors: dict[str, str] | None = None) -> Figure | None:
    """Test top-1 against epoch (one line per method, mean over seeds, band ±1 std) above
    one small panel of loss terms per method (each on its own scale); None when no record
    of the pair has a history. Records without per-epoch accuracy draw the loss panels only.
    """
    rows = [r for r in board.measured if r.curves]
    if not rows:
        return None
    colors = colors or {r.method: f"C{i % 10}" for i, r in enumerate(sorted(rows, key=_key))}
    has_acc = any("test_top1" in r.curves for r in rows)
    ncols = min(4, len(rows))
    nrows = -(-len(rows) // ncols)
    heights = ([2.2] if has_acc else []) + [1.0] * nrows
    fig = Figure(figsize=(3.2 * ncols + 2.2, 3.4 * has_acc + 2.3 * nrows), layout="constrained")
    grid = fig.add_gridspec(len(heights), ncols, height_ratios=heights)
    if has_acc:
        acc = fig.add_subplot(grid[0, :])
        for row in rows:
            _line(acc, row.curves.get("test_top1"), colors[row.method], "-", row.label)
        acc.set_ylabel("test top-1 %\n(mean ± std over seeds)")
        acc.set_title("test accuracy", fontsize="medium")
        _epochs(acc)
        acc.legend(loc="lower right", fontsize="small", ncols=2)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(grid[i // ncols + has_acc, i % ncols])
        terms = [k for k in row.curves if k != "test_top1"]
        for j, name in enumerate(terms):
            style = LINESTYLES[j % len(LINESTYLES)]
            _line(ax, row.curves[name], colors[row.method], style, name.removeprefix("train/"))
        ax.set_title(f"{row.label}: loss terms", fontsize="small", color=colors[row.method])
        _epochs(ax)
        ax.tick_params(labelsize="small")
        if terms:
            ax.legend(fontsize="x-small")
    fig.suptitle(f"{board.title}: training curves", fontsize="medium")
    return _showing(fig, [r.method for r in rows])


def _epochs(ax) -> None:
    ax.set_xlabel("epoch", fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    ax.grid(True, alpha=0.3)


def _line(ax, series, color: str, style: str, label: str | None) -> None:
    if not series:
        return
    epochs = [e for e, _, _, _ in series]
    means = [m for _, m, _, _ in series]
    stds = [s for _, _, s, _ in series]
    ax.plot(epochs, means, style, color=color, lw=1.4, label=label)
    if any(stds):
        low = [m - s for m, s in zip(means, stds, strict=True)]
        high = [m + s for m, s in zip(means, stds, strict=True)]
        ax.fill_between(epochs, low, high, color=color, alpha=0.15, lw=0)


def sensitivity(board: Board, colors: dict[str, str] | None = None) -> Figure | None:
    """Validation top-1 against each tuned value, one row of panels per tuned method.

    Every trial of the method's study is a point: pruned ones hollow, at the accuracy
    where they stopped; the published setting (trial 0) a black-edged square, the
    selected one ringed. A range spanning a factor of 10 or more is drawn on a log axis.
    None when no row of the pair is tuned or its trials were not found.
    """
    rows = [r for r in board.tuned if r.tuning and r.tuning.ran and r.tuning.selected]
    if not rows:
        return None
    colors = colors or {r.method: f"C{i % 10}" for i, r in enumerate(sorted(rows, key=_key))}
    ncols = max(len(r.tuning.selected) for r in rows if r.tuning)
    fig = Figure(figsize=(2.9 * ncols + 0.6, 2.5 * len(rows) + 0.5), layout="constrained")
    for i, row in enumerate(rows):
        tuning = row.tuning
        assert tuning is not None
        color = colors[row.method]
        for j, name in enumerate(sorted(tuning.selected)):
            ax = fig.add_subplot(len(rows), ncols, i * ncols + j + 1)
            trials = [t for t in tuning.ran if name in t.params and not math.isnan(t.val_top1)]
            xs = _positions(ax, [t.params[name] for t in trials])
            for x, trial in zip(xs, trials, strict=True):
                pruned = trial.status != "ok"
                ax.plot(x, trial.val_top1, "s" if trial.number == 0 else "o", ms=6,
                        mfc="none" if pruned else color, mec="black" if trial.number == 0
                        else color, alpha=0.85)  # fmt: skip
                if trial.params == tuning.selected and not pruned:
                    ax.plot(x, trial.val_top1, "o", ms=13, mfc="none", mec="black", mew=1.2)
            ax.set_xlabel(name, fontsize="small")
            ax.tick_params(labelsize="small")
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"{row.label}\nvalidation top-1 %", fontsize="small", color=color)
    fig.suptitle(
        f"{board.title}: tuning sensitivity\n"
        "square: published setting, ringed: selected, hollow: pruned",
        fontsize="medium",
    )
    return _showing(fig, [r.method for r in rows])


def _positions(ax, values: list) -> list:
    """Where each value sits on the x axis: numbers as they are (log where they span a
    factor of 10), anything else as evenly spaced categories."""
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        if min(values) > 0 and max(values) >= 10 * min(values):
            ax.set_xscale("log")  # labelled at 1, 2 and 5 of each decade, as plain numbers
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        return values
    categories = sorted({str(v) for v in values})
    ax.set_xticks(range(len(categories)), categories)
    return [categories.index(str(v)) for v in values]


# the figures drawn for each pair (the rest are drawn for each dataset)
PER_PAIR = ("bars_", "curves_", "sensitivity_")


def figures(board_set: Leaderboard) -> dict[str, Figure]:
    """Every figure of a leaderboard by file stem, with one colour per method throughout."""
    colors = method_colors(board_set)
    out: dict[str, Figure] = {}
    for dataset in sorted({b.dataset for b in board_set.boards}):
        for axis in AXES:
            fig = scatter(board_set, dataset, axis, colors)
            if fig is not None:
                out[f"{slug(dataset)}_accuracy_vs_{axis}"] = fig
    for board in board_set.boards:
        out[f"bars_{slug(board.title)}"] = bars(board, colors)
        curves = training_curves(board, colors)
        if curves is not None:
            out[f"curves_{slug(board.title)}"] = curves
        tuned = sensitivity(board, colors)
        if tuned is not None:
            out[f"sensitivity_{slug(board.title)}"] = tuned
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
