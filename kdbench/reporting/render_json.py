"""The JSON document: every table and the provenance, for tools."""

from __future__ import annotations

import json
from typing import Any

from kdbench.reporting.board_model import Leaderboard, Row
from kdbench.reporting.board_schema import FORMAT
from kdbench.reporting.formats import is_nan, notes
from kdbench.reporting.render_csv import (
    cost_record,
    cross_pair_records,
    row_record,
)
from kdbench.reporting.stats import CONFIDENCE


def trial_records(row: Row) -> list[dict[str, Any]] | None:
    """A tuned row's trials (the data of its sensitivity figure); None for other rows."""
    if row.tuning is None:
        return None
    return [
        {"trial": t.number, "params": t.params, "status": t.status,
         "val_top1": None if is_nan(t.val_top1) else t.val_top1}
        for t in row.tuning.ran
    ]  # fmt: skip


def to_json(board_set: Leaderboard) -> str:
    """Everything, for tools: pairs with rows, the cross-pair matrix, runs, warnings."""
    cross = board_set.cross
    data = {
        "format": FORMAT,
        "confidence": CONFIDENCE,
        "notes": notes(board_set),
        "pairs": [
            {
                "dataset": b.dataset,
                "teacher": b.teacher,
                "student": b.student,
                "variant": b.variant,
                "title": b.title,
                "teacher_top1": None if is_nan(b.teacher_top1) else b.teacher_top1,
                "teacher_published": None
                if b.teacher_published is None
                else {"top1": b.teacher_published.top1, "source": b.teacher_published.source},
                "baseline_top1": None if is_nan(b.baseline) else b.baseline,
                "seeds": b.seeds,
                "student_costs": [cost_record(c) for c in b.costs],
                "teacher_costs": [cost_record(c) for c in b.teacher_costs],
                "rows": [{**row_record(b, r), "trials": trial_records(r)} for r in b.rows],
            }
            for b in board_set.boards
        ],
        "cross_pair": {
            "pairs": cross.columns,
            "methods": [
                {
                    "method": m,
                    "avg_rank": None if is_nan(cross.avg_rank[m]) else cross.avg_rank[m],
                    "pairs_ranked": cross.n_ranked[m],
                }
                for m in cross.methods
            ],
            "cells": cross_pair_records(cross),
            "teacher": {c: None if is_nan(v) else v for c, v in cross.teacher.items()},
        },
        "runs": board_set.runs,
        "provenance": board_set.provenance,
        "warnings": board_set.warnings,
    }
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
