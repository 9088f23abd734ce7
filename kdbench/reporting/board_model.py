"""The leaderboard's model: a row per method, a board per pair, the cross-pair matrix.

Plain data, filled by :func:`kdbench.reporting.leaderboard.build` and read by every
renderer. A row is measured (pooled seeds of one configuration) or published
(a number from the reference tables, which never enters a statistic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kdbench.records.costs import Cost
from kdbench.reporting.reference import LAST, Published
from kdbench.reporting.stats import (
    Paired,
    SeedStats,
)

NAN = math.nan


MEASURED = "measured"


PUBLISHED = "published"


@dataclass
class TrialPoint:
    """One tuning trial of a tuned row's study: its values and validation top-1."""

    number: int
    params: dict[str, Any]
    val_top1: float  # the last evaluated epoch's (a pruned trial's: where it stopped)
    status: str  # ok, pruned or failed


@dataclass
class Tuning:
    """How a tuned row's setting was chosen (its final records' ``config.tune``)."""

    study: str
    trials: int  # the budget per method
    trial_epochs: int
    validation: float  # the held-out fraction of the training split
    sampler: str
    selected: dict[str, Any]
    selected_val_top1: float
    ran: list[TrialPoint] = field(default_factory=list)  # the study's trial records

    @property
    def summary(self) -> str:
        """What was done, in a few words: ``8 trials of 5 epochs, 10 % validation``."""
        epochs = "epoch" if self.trial_epochs == 1 else "epochs"
        return (
            f"{self.trials} trials of {self.trial_epochs} {epochs}, "
            f"{self.validation * 100:g} % validation, {self.sampler} sampler"
        )

    @property
    def published_val_top1(self) -> float:
        """The published setting's validation top-1: every study's trial 0."""
        first = next((t for t in self.ran if t.number == 0 and t.status == "ok"), None)
        return first.val_top1 if first else NAN


TUNED = "tuned"


@dataclass
class Row:
    """One method of one pair: measured over seeds, or one published figure."""

    kind: str
    method: str
    status: str = "ok"
    n: int = 0
    n_failed: int = 0
    seeds: list[int] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)
    mean: float = NAN
    std: float = NAN
    ci: float = NAN
    top5: float = NAN
    best_mean: float = NAN  # best evaluated epoch's top-1: selected on the test split
    best_std: float = NAN
    best_n: int = 0
    best_epoch: float = NAN
    delta: float = NAN
    paired: Paired | None = None  # difference from the baseline over shared seeds
    better: bool | None = None  # better than the baseline by the paired t-test
    gap: float = NAN
    best: bool = False
    overlaps_best: bool | None = None
    extra_params: float = NAN
    train_s: float = NAN
    step_ms: float = NAN
    published: float = NAN
    vs_published: float = NAN
    statistic: str = LAST  # which epoch the top-1 is (published rows: as their source says)
    vs_statistic: str = ""  # the kind of figure vs_published compares
    source: str = ""
    shared: bool = False
    errors: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    config: str = ""  # the configuration hash, set where a method has several on a board
    tuning: Tuning | None = None  # a tuned method's final runs: how the setting was chosen
    per_seed: dict[int, float] = field(default_factory=dict)
    # series ("test_top1", "train/<term>") -> (epoch, mean, std, n) over seeds
    curves: dict[str, list[tuple[int, float, float, int]]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The method (tuned or not), with its configuration where the board has several."""
        name = f"{self.method} ({TUNED})" if self.tuning else self.method
        return f"{name} [{self.config}]" if self.config else name

    @property
    def failed(self) -> bool:
        return self.kind == MEASURED and self.n == 0 and self.n_failed > 0

    def stats(self) -> SeedStats:
        return SeedStats(self.n, self.mean, self.std, self.ci)


@dataclass
class Board:
    """The leaderboard of one (dataset, teacher -> student) pair."""

    dataset: str
    teacher: str
    student: str
    teacher_name: str
    student_name: str
    teacher_top1: float = NAN
    teacher_published: Published | None = None
    baseline: float = NAN  # the baseline's top-1 in its published setting (else tuned)
    tuned_baseline: float = NAN  # the tuned baseline's, where both ran
    seeds: list[int] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    variant: str = ""
    costs: list[Cost] = field(default_factory=list)  # the student's, one per device
    teacher_costs: list[Cost] = field(default_factory=list)

    @property
    def cost(self) -> Cost | None:
        """The cost every row of this student shows (the first device's)."""
        return self.costs[0] if self.costs else None

    @property
    def pair(self) -> str:
        base = f"{self.teacher} → {self.student}"
        return f"{base} [{self.variant}]" if self.variant else base

    @property
    def title(self) -> str:
        return f"{self.dataset}: {self.pair}"

    @property
    def measured(self) -> list[Row]:
        return [r for r in self.rows if r.kind == MEASURED]

    @property
    def tuned(self) -> list[Row]:
        return [r for r in self.rows if r.tuning is not None]

    @property
    def has_published(self) -> bool:
        return self.teacher_published is not None or any(r.kind == PUBLISHED for r in self.rows)


@dataclass
class CrossPair:
    """Methods x pairs top-1 matrix with each method's average rank (rank 1 = best)."""

    columns: list[str]
    methods: list[str]
    top1: dict[tuple[str, str], float]
    status: dict[tuple[str, str], str]
    teacher: dict[str, float]
    rank: dict[tuple[str, str], float]
    avg_rank: dict[str, float]
    n_ranked: dict[str, int]
    best: dict[str, float]
    published: dict[tuple[str, str], dict[str, float]]  # (method, statistic) -> pair -> top-1


@dataclass
class Leaderboard:
    boards: list[Board]
    cross: CrossPair
    runs: list[dict[str, Any]]
    provenance: list[dict[str, Any]]
    warnings: list[str]

    @property
    def has_tuned(self) -> bool:
        """Whether any pair has a tuned row (its notes and CSV columns then say so)."""
        return any(board.tuned for board in self.boards)


def model_label(spec: dict[str, Any] | None) -> str:
    """A model's name, with its parameters when it has any (``cnn(width=4)``)."""
    if not spec:
        return "-"
    params = spec.get("params") or {}
    if not params:
        return spec["name"]
    inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{spec['name']}({inner})"
