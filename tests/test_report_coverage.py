"""The all-pairs ranking never rewards missing data, and published rows match models with
their parameters."""

from __future__ import annotations

import math

from kdbench.reporting.collect import Collected
from kdbench.reporting.leaderboard import build
from kdbench.reporting.reference import Published


def record(student: int, method: str, seed: int, top1: float) -> dict:
    teacher = None
    if method != "ce":
        model = {"name": "cnn", "params": {"width": 32}}
        teacher = {"id": "t32", "model": model, "seed": 0}
    return {
        "schema_version": 2,
        "cell_id": f"{student}-{method}-{seed}",
        "status": "ok",
        "config": {
            "benchmark": "b",
            "dataset": {"name": "toy", "params": {}},
            "student": {"name": "cnn", "params": {"width": student}},
            "loss": {"name": method, "label": method, "params": {}},
            "seed": seed,
            "recipe": {},
            "measure": {},
            "teacher": teacher,
        },
        "metrics": {"top1": top1},
    }


def board_set(values: dict[tuple[int, str], float], reference=()):
    records = [
        record(student, method, seed, top1 + 0.1 * seed)
        for (student, method), top1 in values.items()
        for seed in (0, 1)
    ]
    return build(Collected(records=records), reference)


def test_a_method_on_fewer_pairs_never_ranks_above_one_on_all():
    # dist wins the one pair it ran on (rank 1); kd is second there, first elsewhere
    values = {
        (4, "ce"): 70.0, (4, "kd"): 71.0, (4, "dist"): 72.0,
        (8, "ce"): 73.0, (8, "kd"): 74.0,
        (16, "ce"): 75.0, (16, "kd"): 76.0,
    }  # fmt: skip
    cross = board_set(values).cross
    assert cross.avg_rank["dist"] == 1.0 and cross.n_ranked["dist"] == 1
    assert cross.avg_rank["kd"] == 4 / 3 and cross.n_ranked["kd"] == 3
    assert cross.methods == ["kd", "ce", "dist"]


def test_partial_rows_sort_by_rank_among_equal_coverage():
    values = {
        (4, "ce"): 70.0, (4, "kd"): 71.0, (4, "dist"): 72.0, (4, "at"): 69.0,
        (8, "ce"): 73.0, (8, "kd"): 74.0,
    }  # fmt: skip
    cross = board_set(values).cross
    assert cross.avg_rank["dist"] < cross.avg_rank["kd"] < cross.avg_rank["ce"]
    assert cross.methods == ["kd", "ce", "dist", "at"]


def published(student: str, top1: float) -> Published:
    return Published("toy", "cnn(width=32)", student, "kd", top1, math.nan, "paper", "last")


def test_reference_rows_match_architecture_and_parameters():
    values = {(4, "ce"): 70.0, (4, "kd"): 71.0, (8, "ce"): 73.0, (8, "kd"): 74.0}
    reference = [published("cnn(width=8)", 74.5), published("cnn", 60.0)]
    boards = {b.student: b for b in board_set(values, reference).boards}
    narrow = [r for r in boards["cnn(width=4)"].rows if r.kind == "published"]
    wide = [r for r in boards["cnn(width=8)"].rows if r.kind == "published"]
    assert narrow == []  # a bare `cnn` row applies to no width, nor does width=8's
    assert [r.mean for r in wide] == [74.5]
