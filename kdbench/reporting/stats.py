"""The statistics behind a leaderboard: seed spread, t intervals, ranks, Pareto fronts.

Kept apart from the tables so each number can be checked on its own; every function
takes plain numbers and returns plain numbers (NaN where a quantity is undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    p_t = paired_t_p([method[s] for s in seeds], [baseline[s] for s in seeds])
    p_w = wilcoxon_p(diffs) if any(d != 0 for d in diffs) else math.nan
    return Paired(n, spread.mean, spread.ci, p_t, p_w)


# The two tests below compute what scipy.stats.ttest_rel and scipy.stats.wilcoxon compute,
# operation for operation, so every p-value is the same float; scipy.stats itself takes
# half a second to import, more than the rest of `kdbench report` together.


def paired_t_p(a: Sequence[float], b: Sequence[float]) -> float:
    """The paired t-test's two-sided p (``scipy.stats.ttest_rel``): a closed form in t."""
    import numpy as np
    from scipy.special import stdtr

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = d.shape[0]
    mean = np.mean(d)
    var = np.mean((d - np.mean(d, keepdims=True)) ** 2) * (np.float64(n) / (n - 1))
    t = mean / np.sqrt(var / n)
    return float(2 * stdtr(np.float64(n - 1), -np.abs(t)))


def wilcoxon_p(diffs: Sequence[float]) -> float:
    """The Wilcoxon signed-rank test's two-sided p (``scipy.stats.wilcoxon``).

    The statistic is the rank sum of the positive differences. Up to 50 differences
    without zeros or tied magnitudes, scipy takes p from the exact null distribution;
    up to 13 with ties, from all 2^n sign flips (its permutation test, exact too): both
    are done here as scipy does them. Zeros, or ties among more than 13 differences
    (the normal approximation), are left to scipy.stats.
    """
    import numpy as np

    d = np.asarray(diffs, dtype=np.float64)
    n = d.shape[0]
    ranks = _average_ranks([abs(x) for x in diffs])
    ties = len(set(ranks)) != n
    if np.any(d == 0) or n > (13 if ties else 50):
        from scipy import stats

        return float(stats.wilcoxon(diffs).pvalue)
    r_plus = float(np.sum((d > 0).astype(np.float64) * np.asarray(ranks)))
    if ties:  # every sign flip's rank sum; ranks are halves, so the sums are exact
        null = [sum(r for r, bit in zip(ranks, range(n), strict=True) if flips >> bit & 1)
                for flips in range(2**n)]  # fmt: skip
        below = sum(1 for x in null if x <= r_plus) / 2**n
        above = sum(1 for x in null if x >= r_plus) / 2**n
        return min(min(below, above) * 2, 1.0)
    k = int(r_plus)
    pmf = _wilcoxon_pmf(n)
    mean = n * (n + 1) / 4
    sf = pmf[k:].sum() if k <= mean else 1 - pmf[:k].sum()
    cdf = pmf[: k + 1].sum() if k <= mean else 1 - pmf[k + 1 :].sum()
    return float(np.clip(2 * np.minimum(sf, cdf), 0, 1))


def _average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1 in increasing order; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _wilcoxon_pmf(n: int) -> Any:
    """P(r_plus = r) for r = 0 .. n(n+1)/2 under the null, built as scipy builds it."""
    import numpy as np

    c = np.ones(1, dtype=np.float64)
    for k in range(1, n + 1):
        prev = c
        c = np.zeros(k * (k + 1) // 2 + 1, dtype=np.float64)
        c[: len(prev)] = prev * 0.5
        c[-len(prev) :] += prev * 0.5
    return c
