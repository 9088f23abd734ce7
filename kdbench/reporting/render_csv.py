"""The CSV tables: one row per method and pair, the cross-pair cells, the provenance.

Their row records are the JSON document's too (:mod:`kdbench.reporting.render_json`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from typing import Any

from kdbench.records.costs import Cost
from kdbench.reporting.board_model import (
    MEASURED,
    Board,
    CrossPair,
    Leaderboard,
    Row,
)
from kdbench.reporting.formats import is_nan

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


# where a row is tuned: its budget in words, the selected values, their validation top-1
TUNED_COLUMNS = ["tuned", "selected", "selected_val_top1"]


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
        "baseline_top1": (  # the baseline its delta is against: the tuned one for tuned rows
            board.tuned_baseline
            if row.tuning and not is_nan(board.tuned_baseline)
            else board.baseline
        ),
        "published_top1": row.published,
        "vs_published": row.vs_published,
        "vs_published_statistic": row.vs_statistic or None,
        "source": row.source,
        "tuned": row.tuning.summary if row.tuning else None,
        "selected": row.tuning.selected if row.tuning else None,
        "selected_val_top1": row.tuning.selected_val_top1 if row.tuning else None,
        "errors": row.errors,
        "cells": row.cells,
    }
    return {k: None if is_nan(v) else v for k, v in data.items()}


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
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, float):
        return repr(value)
    return value


def leaderboard_csv(board_set: Leaderboard) -> str:
    """Every row of every pair, measured and published (told apart by ``kind``)."""
    rows = [row_record(b, r) for b in board_set.boards for r in b.rows]
    return _csv(rows, CSV_COLUMNS + TUNED_COLUMNS if board_set.has_tuned else CSV_COLUMNS)


def cost_record(cost: Cost) -> dict[str, Any]:
    """An architecture's cost as plain data (None where undefined)."""
    data = dataclasses.asdict(cost)
    data["p50_ci_ms"] = [None if is_nan(v) else v for v in cost.p50_ci_ms]
    return {k: None if is_nan(v) else v for k, v in data.items()}


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
                    "top1_mean": None if is_nan(cross.top1[key]) else cross.top1[key],
                    "status": cross.status[key],
                    "rank": cross.rank.get(key),
                    "avg_rank": None if is_nan(cross.avg_rank[method]) else cross.avg_rank[method],
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
