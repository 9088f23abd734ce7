"""Published rows: the reference tables' numbers beside the measured rows.

A published figure is compared with the measured figure of its own kind (last epoch or
best epoch, :mod:`kdbench.reporting.reference`) and never enters a statistic.
"""

from __future__ import annotations

from kdbench.reporting.board_model import (
    NAN,
    PUBLISHED,
    Board,
    Row,
)
from kdbench.reporting.reference import BEST, LAST, TEACHER, Published, for_pair, method_key


def with_published(board: Board, rows: list[Row], reference: list[Published]) -> list[Row]:
    published = for_pair(reference, board.dataset, board.teacher, board.student)
    if not published:
        return rows
    by_key = {method_key(p.method): p for p in published if p.method != TEACHER}
    board.teacher_published = next((p for p in published if p.method == TEACHER), None)
    out, matched = [], set()
    for row in rows:
        out.append(row)
        pub = by_key.get(method_key(row.method))
        if pub is None:
            continue
        matched.add(method_key(row.method))
        row.published = pub.top1
        row.vs_published = measured_figure(row, pub.statistic) - pub.top1
        row.vs_statistic = pub.statistic
        out.append(published_row(pub, row.method))
    rest = [p for k, p in by_key.items() if k not in matched]
    out.extend(published_row(p, p.method) for p in sorted(rest, key=lambda p: -p.top1))
    return out


def measured_figure(row: Row, statistic: str) -> float:
    """The measured mean of the kind a published figure is (NaN when unstated or missing).

    A best-epoch figure is only complete when every finished seed has one.
    """
    if statistic == LAST:
        return row.mean
    if statistic == BEST and row.best_n == row.n:
        return row.best_mean
    return NAN


def published_row(pub: Published, method: str) -> Row:
    return Row(
        kind=PUBLISHED,
        method=method,
        status=PUBLISHED,
        mean=pub.top1,
        std=pub.std,
        published=pub.top1,
        statistic=pub.statistic,
        source=pub.source,
    )


def published_label(method: str, statistic: str) -> str:
    """A published row's name in tables: the method and which epoch its source reports."""
    return f"{method} (published, {statistic})"
