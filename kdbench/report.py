"""Reports from records: the run's summary table and the published leaderboard outputs.

Everything here is a function of the records on disk (nothing else is reported), so any
output can be rebuilt at any time with ``kdbench report DIR...``. ``kdbench run`` writes
the quick summary (``table.md``/``table.csv``); :func:`publish` writes the leaderboard
in every format, computed once by :mod:`kdbench.leaderboard`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from kdbench.collect import collect_or_fail
from kdbench.config import BASELINE_LOSS
from kdbench.formats import (
    cross_pair_csv,
    latex,
    leaderboard_csv,
    markdown,
    provenance_csv,
    to_json,
)
from kdbench.leaderboard import Leaderboard, build
from kdbench.records import write_text_atomic
from kdbench.reference import default_reference_dir, load_reference

KEYS = ["dataset", "teacher", "student", "loss"]


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, with the fields tables are made of."""
    rows = []
    for r in records:
        config, metrics = r["config"], r.get("metrics", {})
        latency, size, cost = r.get("latency") or {}, r.get("size", {}), r.get("cost", {})
        teacher = config.get("teacher") or {}
        rows.append(
            {
                "cell_id": r["cell_id"],
                "status": r["status"],
                "dataset": config["dataset"]["name"],
                "teacher": teacher.get("model", {}).get("name", "-"),
                "teacher_top1": (r.get("teacher") or {}).get("top1"),
                "student": config["student"]["name"],
                "loss": config["loss"]["label"],
                "seed": config["seed"],
                "top1": metrics.get("top1"),
                "top5": metrics.get("top5"),
                "p50_ms": latency.get("batch1_p50_ms"),
                "throughput": latency.get("throughput_img_s"),
                "params": size.get("params"),
                "flops": size.get("flops_per_image"),
                "extra_params": size.get("extra_params"),
                "train_s": cost.get("train_seconds"),
                "error": (r.get("error") or {}).get("message"),
            }
        )
    return pd.DataFrame(rows, columns=_COLUMNS)


_COLUMNS = [
    "cell_id", "status", "dataset", "teacher", "teacher_top1", "student", "loss", "seed",
    "top1", "top5", "p50_ms", "throughput", "params", "flops", "extra_params", "train_s", "error",
]  # fmt: skip


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Aggregate seeds per (dataset, teacher, student, loss); failed cells are counted."""
    if frame.empty:
        return pd.DataFrame()
    ok = frame[frame.status == "ok"]
    groups = frame.groupby(KEYS, sort=False)
    summary = groups.agg(
        n_failed=("status", lambda s: int((s != "ok").sum())),
        teacher_top1=("teacher_top1", "first"),
    )
    stats = ok.groupby(KEYS, sort=False).agg(
        n=("top1", "count"),
        top1_mean=("top1", "mean"),
        top1_std=("top1", "std"),
        top5_mean=("top5", "mean"),
        p50_ms=("p50_ms", "median"),
        throughput=("throughput", "median"),
        params=("params", "first"),
        flops=("flops", "first"),
        extra_params=("extra_params", "first"),
        train_s=("train_s", "mean"),
    )
    summary = summary.join(stats, how="left").reset_index()
    summary["n"] = summary["n"].fillna(0).astype(int)
    baseline = summary[summary.loss == BASELINE_LOSS].set_index(["dataset", "student"])["top1_mean"]
    summary["delta_vs_baseline"] = [
        row.top1_mean - baseline.get((row.dataset, row.student), float("nan"))
        for row in summary.itertuples()
    ]
    summary["teacher_below_baseline"] = [
        bool(row.teacher_top1 < baseline.get((row.dataset, row.student), float("-inf")))
        if pd.notna(row.teacher_top1)
        else False
        for row in summary.itertuples()
    ]
    summary["_base"] = summary.loss != BASELINE_LOSS
    summary = summary.sort_values(
        ["dataset", "student", "_base", "teacher", "top1_mean"],
        ascending=[True, True, True, True, False],
    )
    return summary.drop(columns="_base").reset_index(drop=True)


def _pm(mean: float, std: float, digits: int = 2) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The human table: formatted strings, failures and teacher flags visible."""
    rows = []
    for row in summary.itertuples():
        teacher = row.teacher
        if pd.notna(row.teacher_top1):
            flag = " (!)" if row.teacher_below_baseline else ""
            teacher = f"{row.teacher} ({row.teacher_top1:.2f}){flag}"
        status = f"{row.n_failed} failed" if row.n_failed else "ok"
        rows.append(
            {
                "dataset": row.dataset,
                "teacher (top-1)": teacher,
                "student": row.student,
                "loss": row.loss,
                "n": row.n,
                "top-1 %": _pm(row.top1_mean, row.top1_std),
                "Δ vs ce": "-"
                if pd.isna(row.delta_vs_baseline) or row.loss == BASELINE_LOSS
                else f"{row.delta_vs_baseline:+.2f}",
                "top-5 %": _pm(row.top5_mean, float("nan")),
                "b1 p50 ms": _num(row.p50_ms, "{:.3f}"),
                "img/s": _num(row.throughput, "{:,.0f}"),
                "params": _num(row.params, "{:,.0f}"),
                "MFLOPs": _num(row.flops / 1e6 if pd.notna(row.flops) else row.flops, "{:.2f}"),
                "extra params": _num(row.extra_params, "{:,.0f}"),
                "train s": _num(row.train_s, "{:.1f}"),
                "status": status,
            }
        )
    return pd.DataFrame(rows)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None or pd.isna(value) else fmt.format(value)


NOTES = (
    "top-1/top-5: last epoch on the test split, mean ± sample std over n seeds. "
    "Δ vs ce: against the same student trained without distillation. "
    "b1 p50: batch-1 median latency; img/s: throughput at a large batch. "
    "MFLOPs: forward FLOPs per image / 1e6 (2 per multiply-add). "
    "(!) marks a teacher less accurate than its student's baseline."
)


def render(summary: pd.DataFrame, fmt: str = "github") -> str:
    table = display_table(summary)
    if table.empty:
        return "no records"
    return tabulate(table, headers="keys", tablefmt=fmt, showindex=False, disable_numparse=True)


def write_tables(out_dir: Path, summary: pd.DataFrame) -> list[Path]:
    """``table.md`` (for people) and ``table.csv`` (for tools) beside the records."""
    md, csv = out_dir / "table.md", out_dir / "table.csv"
    write_text_atomic(md, render(summary) + "\n\n" + NOTES + "\n")
    write_text_atomic(csv, summary.to_csv(index=False, float_format="%.6g"))
    return [md, csv]


# Publishing ---------------------------------------------------------------------------

FORMATS = ("md", "csv", "latex", "html", "json")


def build_leaderboard(
    locations: Sequence[Path], reference: Path | None = None, use_reference: bool = True
) -> Leaderboard:
    """Records under ``locations`` (duplicates dropped) as leaderboards, with published
    numbers from ``reference`` (default: ``results/reference``) beside them."""
    found = collect_or_fail(locations)
    rows = load_reference(reference or default_reference_dir()) if use_reference else []
    return build(found, rows)


def render_format(board_set: Leaderboard, fmt: str, figs: dict | None = None) -> str:
    """One format as text (CSV: the leaderboard table only)."""
    if fmt == "md":
        return markdown(board_set)
    if fmt == "csv":
        return leaderboard_csv(board_set)
    if fmt == "latex":
        return latex(board_set)
    if fmt == "json":
        return to_json(board_set)
    if fmt == "html":
        from kdbench.plots import figures
        from kdbench.site import page

        return page(board_set, figs if figs is not None else figures(board_set))
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def publish(
    board_set: Leaderboard, out_dir: Path, formats: Sequence[str] = FORMATS, plots: bool = True
) -> list[Path]:
    """Write each format (and the figures as PNG and SVG) into ``out_dir``."""
    # matplotlib is imported only when something is drawn: `kdbench run` never needs it.
    from kdbench.plots import figures, write_plots
    from kdbench.site import page

    out_dir = Path(out_dir)
    figs = figures(board_set) if plots else {}
    written = []
    files = {
        "md": {"leaderboard.md": lambda: markdown(board_set)},
        "csv": {
            "leaderboard.csv": lambda: leaderboard_csv(board_set),
            "cross_pair.csv": lambda: cross_pair_csv(board_set),
            "provenance.csv": lambda: provenance_csv(board_set),
        },
        "latex": {"leaderboard.tex": lambda: latex(board_set)},
        "json": {"leaderboard.json": lambda: to_json(board_set)},
        "html": {"leaderboard.html": lambda: page(board_set, figs)},
    }
    for fmt in formats:
        for name, make in files[fmt].items():
            write_text_atomic(out_dir / name, make())
            written.append(out_dir / name)
    if figs:
        written += write_plots(out_dir / "plots", figs)
    return written
