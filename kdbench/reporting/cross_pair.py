"""The cross-pair matrix: each method's top-1 on every pair, and its average rank."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from kdbench.reporting.board_model import (
    NAN,
    PUBLISHED,
    Board,
    CrossPair,
)
from kdbench.reporting.stats import (
    ranks,
)


def cross_pair(boards: list[Board]) -> CrossPair:
    """The layout of KD papers' main table, plus each method's mean rank over pairs."""
    columns = [b.title for b in boards]
    top1, status, rank, teacher, best, published = {}, {}, {}, {}, {}, defaultdict(dict)
    order: dict[str, None] = {}
    for board, column in zip(boards, columns, strict=True):
        teacher[column] = board.teacher_top1
        means = {}
        for row in board.rows:
            if row.kind == PUBLISHED:
                published[(row.method, row.statistic)][column] = row.mean
                continue
            order.setdefault(row.label)
            top1[(row.label, column)] = row.mean
            status[(row.label, column)] = row.status
            if row.n > 0:
                means[row.label] = row.mean
        for method, value in ranks(means).items():
            rank[(method, column)] = value
        best[column] = max(means.values()) if means else NAN
    avg_rank, n_ranked = {}, {}
    for method in order:
        got = [rank[(method, c)] for c in columns if (method, c) in rank]
        avg_rank[method] = statistics.fmean(got) if got else NAN
        n_ranked[method] = len(got)
    # Coverage first: a method ranked on fewer pairs never sorts above one ranked on more,
    # however good its few ranks (missing data must not pay).
    methods = sorted(order, key=lambda m: (math.isnan(avg_rank[m]), -n_ranked[m], avg_rank[m], m))
    return CrossPair(
        columns=columns,
        methods=methods,
        top1=top1,
        status=status,
        teacher=teacher,
        rank=rank,
        avg_rank=avg_rank,
        n_ranked=n_ranked,
        best=best,
        published=dict(published),
    )
