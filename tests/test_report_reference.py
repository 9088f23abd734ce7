"""Reference files say which epoch each published figure is; a bad file is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.core.errors import KdbenchError
from kdbench.reporting.reference import load_reference

HEADER = "teacher,student,method,top1,std,statistic,source\n"


def test_each_published_row_keeps_its_statistic(tmp_path: Path):
    path = tmp_path / "cifar100_published.csv"
    path.write_text(
        HEADER + "a,b,kd,70.1,,last,one\na,b,dkd,71.2,,best,two\na,b,dist,70.5,0.2,unstated,three\n"
    )
    rows = load_reference(path)
    assert [(r.method, r.statistic) for r in rows] == [
        ("kd", "last"),
        ("dkd", "best"),
        ("dist", "unstated"),
    ]


def test_a_statistic_other_than_last_best_or_unstated_names_file_and_line(tmp_path: Path):
    path = tmp_path / "cifar100_published.csv"
    path.write_text(HEADER + "a,b,kd,70.1,,last,one\na,b,dkd,71.2,,mean,two\n")
    with pytest.raises(
        KdbenchError,
        match=r"_published\.csv:3: statistic must be one of last, best, unstated \(got 'mean'\)",
    ):
        load_reference(path)


def test_a_reference_file_without_the_statistic_column_is_an_error(tmp_path: Path):
    path = tmp_path / "cifar100_published.csv"
    path.write_text("teacher,student,method,top1,std,source\na,b,kd,70.1,,one\n")
    with pytest.raises(KdbenchError, match="lacks the column"):
        load_reference(path)


def test_the_shipped_reference_labels_repdistiller_last_and_mdistiller_best():
    rows = load_reference(Path(__file__).parents[1] / "results" / "reference")
    by_source = {}
    for row in rows:
        by_source.setdefault(row.source.split()[0], set()).add(row.statistic)
    assert by_source["HobbitLong/RepDistiller"] == {"last"}
    assert by_source["megvii-research/mdistiller"] == {"best"}
