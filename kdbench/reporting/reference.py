"""Published numbers shown beside measured ones, always as their own, marked rows.

A reference file is ``<dataset>_published.csv`` with the columns ``teacher, student,
method, top1, std, statistic, source``. The method ``teacher`` is the teacher's own
accuracy and ``student`` the student trained alone (the ``ce`` baseline). Other methods
match a measured loss label after normalisation (case, ``+`` for ``_``: ``kd+ls`` is
``kd_ls``). These rows never enter means, ranks or the choice of the best method.

``statistic`` says which epoch the source reports: ``last`` (RepDistiller: the final
epoch), ``best`` (mdistiller: the best test epoch, so selected on the test set) or
``unstated``. ``teacher`` and ``student`` name an architecture with its parameters as
leaderboards label it (``wrn_40_2``, ``cnn(width=8)``: parameters sorted, ``k=v``
joined by commas). A published figure is compared only with the measured figure of the same
kind: ``last`` with the last epoch's top-1, ``best`` with the best evaluated epoch's.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from kdbench.core.config import BASELINE_LOSS
from kdbench.core.errors import KdbenchError

SUFFIX = "_published.csv"
TEACHER = "teacher"
COLUMNS = ("teacher", "student", "method", "top1", "std", "statistic", "source")
LAST, BEST, UNSTATED = "last", "best", "unstated"
STATISTICS = (LAST, BEST, UNSTATED)


@dataclass(frozen=True)
class Published:
    """One published figure, with where it was published."""

    dataset: str
    teacher: str
    student: str
    method: str
    top1: float
    std: float
    source: str
    statistic: str = UNSTATED


def method_key(label: str) -> str:
    """The form under which a published method and a measured loss label are compared."""
    key = label.strip().lower().replace("+", "_").replace("-", "_")
    return BASELINE_LOSS if key == "student" else key


def default_reference_dir() -> Path | None:
    """``results/reference`` of the working directory, else of the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        folder = base / "results" / "reference"
        if folder.is_dir():
            return folder
    return None


def load_reference(location: Path | None) -> list[Published]:
    """Every row of every ``*_published.csv`` under ``location`` (a folder or one file)."""
    if location is None:
        return []
    location = Path(location)
    if location.is_file():
        files = [location]
    elif location.is_dir():
        files = sorted(location.glob(f"*{SUFFIX}"))
    else:
        raise KdbenchError(f"reference numbers: '{location}' does not exist")
    rows = []
    for path in files:
        if not path.name.endswith(SUFFIX):
            raise KdbenchError(f"reference file '{path}' must be named <dataset>{SUFFIX}")
        rows.extend(_read(path, path.name.removesuffix(SUFFIX)))
    return rows


def _read(path: Path, dataset: str) -> list[Published]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise KdbenchError(f"reference file '{path}' lacks the column(s) {', '.join(missing)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                top1 = float(row["top1"])
                std = float(row["std"]) if row["std"].strip() else math.nan
            except ValueError as exc:
                raise KdbenchError(f"{path}:{line}: {exc}") from None
            statistic = row["statistic"].strip()
            if statistic not in STATISTICS:
                raise KdbenchError(
                    f"{path}:{line}: statistic must be one of {', '.join(STATISTICS)} "
                    f"(got '{statistic}')"
                )
            rows.append(
                Published(
                    dataset=dataset,
                    teacher=row["teacher"].strip(),
                    student=row["student"].strip(),
                    method=row["method"].strip(),
                    top1=top1,
                    std=std,
                    source=row["source"].strip(),
                    statistic=statistic,
                )
            )
    return rows


def for_pair(rows: list[Published], dataset: str, teacher: str, student: str) -> list[Published]:
    """The published rows of one pair: architecture and parameters must both match.

    ``teacher`` and ``student`` are model labels (``cnn(width=4)``; a model without
    parameters is its bare name), so a ``cnn`` row never applies to a ``cnn(width=4)``.
    """
    return [r for r in rows if (r.dataset, r.teacher, r.student) == (dataset, teacher, student)]
