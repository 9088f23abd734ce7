"""The statistics behind a leaderboard: seed spread, t intervals, ranks, Pareto fronts.

Kept apart from the tables so each number can be checked on its own; every function
takes plain numbers and returns plain numbers (NaN where a quantity is undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class SeedStats:
    """Mean, sample std and t-interval half-width of one method's seeds."""

    n: int
    mean: float
    std: float
    ci: float

    @property
    def low(self) -> float:
        return self.mean - self.ci

    @property
    def high(self) -> float:
        return self.mean + self.ci


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student t quantile for ``n`` samples (n - 1 degrees of freedom)."""
    if n < 2:
        return math.nan
    # scipy.special, not scipy.stats: the same stdtrit that t.ppf calls, at a third of the
    # import time; imported on first use, as one seed needs no t
    from scipy.special import stdtrit

    return float(stdtrit(n - 1, 0.5 + confidence / 2))


def seed_stats(values: Sequence[float], confidence: float = CONFIDENCE) -> SeedStats:
    """Seeds are few, so the interval uses t, not the normal; std is the sample std."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return SeedStats(0, math.nan, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n < 2:
        return SeedStats(n, mean, math.nan, math.nan)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return SeedStats(n, mean, std, t_quantile(n, confidence) * std / math.sqrt(n))


def intervals_overlap(a: SeedStats, b: SeedStats) -> bool | None:
    """Whether two intervals share a point; None when either is undefined (n < 2)."""
    if math.isnan(a.ci) or math.isnan(b.ci):
        return None
    return a.low <= b.high and b.low <= a.high


def gap_recovered(acc: float, baseline: float, teacher: float) -> float:
    """Share of the teacher-student gap closed: 0 = baseline, 1 = teacher.

    Undefined (NaN) when the teacher is not better than the baseline: the ratio then
    has no meaning (its sign flips).
    """
    if any(math.isnan(x) for x in (acc, baseline, teacher)) or teacher <= baseline:
        return math.nan
    return (acc - baseline) / (teacher - baseline)


def ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank 1 = highest; ties share the mean of their ranks (as KD papers do)."""
    valid = {k: v for k, v in values.items() if not math.isnan(v)}
    ordered = sorted(valid.values(), reverse=True)
    result = {}
    for key, value in valid.items():
        first = ordered.index(value) + 1
        count = ordered.count(value)
        result[key] = first + (count - 1) / 2
    return result


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats: lower cost (x) and higher accuracy (y).

    Returned in increasing cost, so the front can be drawn as a step line.
    """
    valid = [(x, y, i) for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    front = []
    best = -math.inf
    for _cost, y, i in sorted(valid, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append(i)
            best = y
    return front


@dataclass(frozen=True)
class Paired:
    """A method's difference from the baseline over the seeds both share.

    ``mean`` and ``ci`` (t half-width) are of the per-seed differences; ``p_t`` is the
    paired t-test's two-sided p, ``p_wilcoxon`` the Wilcoxon signed-rank test's (NaN
    where n or the differences do not allow it).
    """

    n: int
    mean: float
    ci: float
    p_t: float
    p_wilcoxon: float

    def better(self, alpha: float = 1 - CONFIDENCE) -> bool | None:
        """Better than the baseline by the paired t-test; None when it cannot be tested."""
        if math.isnan(self.p_t):
            return None
        return self.mean > 0 and self.p_t < alpha


def paired(method: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Per-seed differences method - baseline over shared seeds: a seed fixes the
    initialisation and data order of both, so pairing removes that variance."""
    seeds = sorted(set(method) & set(baseline))
    diffs = [method[s] - baseline[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan)
    spread = seed_stats(diffs)
    if n < 2 or spread.std <= 1e-9 * max(1.0, abs(spread.mean)):  # equal up to rounding
        return Paired(n, spread.mean, spread.ci, math.nan, math.nan)
    from scipy import stats

    p_t = float(stats.ttest_rel([method[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
    p_w = math.nan
    if any(d != 0 for d in diffs):
        p_w = float(stats.wilcoxon(diffs).pvalue)
    return Paired(n, spread.mean, spread.ci, p_t, p_w)
