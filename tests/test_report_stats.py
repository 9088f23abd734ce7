"""The statistics of leaderboards against values computed by hand or from tables."""

from __future__ import annotations

import math
import statistics

import pytest

from kdbench.reporting.stats import (
    gap_recovered,
    intervals_overlap,
    pareto_front,
    ranks,
    seed_stats,
    t_quantile,
)

# Two-sided 95 % Student t quantiles (any statistics table), by degrees of freedom.
T975 = {1: 12.706204736174707, 2: 4.302652729911275, 4: 2.7764451051977987, 9: 2.2621571627409915}


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_matches_the_table(df: int):
    assert t_quantile(df + 1) == pytest.approx(T975[df], rel=1e-9)


def test_seed_stats_mean_sample_std_and_t_interval():
    xs = [76.1, 76.5, 76.3]
    s = seed_stats(xs)
    assert s.n == 3
    assert s.mean == pytest.approx(statistics.fmean(xs))
    assert s.std == pytest.approx(statistics.stdev(xs))  # n - 1, not the population std
    assert s.ci == pytest.approx(T975[2] * statistics.stdev(xs) / math.sqrt(3))
    assert s.low < s.mean < s.high


def test_seed_stats_with_one_or_no_value_has_no_spread():
    one = seed_stats([70.0])
    assert (one.n, one.mean) == (1, 70.0) and math.isnan(one.std) and math.isnan(one.ci)
    none = seed_stats([])
    assert none.n == 0 and math.isnan(none.mean)
    assert seed_stats([float("nan"), 71.0]).n == 1


def test_overlap_is_unknown_without_an_interval():
    a, b, c = seed_stats([70, 71, 72]), seed_stats([71.5, 72.5, 73.5]), seed_stats([90, 91, 92])
    assert intervals_overlap(a, b) is True
    assert intervals_overlap(a, c) is False
    assert intervals_overlap(a, seed_stats([71])) is None


def test_gap_recovered_and_where_it_is_undefined():
    assert gap_recovered(75.0, 70.0, 80.0) == pytest.approx(0.5)
    assert gap_recovered(70.0, 70.0, 80.0) == 0.0
    assert gap_recovered(69.0, 70.0, 80.0) == pytest.approx(-0.1)
    assert math.isnan(gap_recovered(75.0, 70.0, 69.0))  # teacher worse than the baseline
    assert math.isnan(gap_recovered(75.0, 70.0, 70.0))
    assert math.isnan(gap_recovered(75.0, float("nan"), 80.0))


def test_ranks_best_first_ties_share_the_mean_rank():
    got = ranks({"a": 70.0, "b": 75.0, "c": 75.0, "d": 60.0, "e": float("nan")})
    assert got == {"b": 1.5, "c": 1.5, "a": 3.0, "d": 4.0}


def test_pareto_front_keeps_points_nothing_beats():
    points = [(1.0, 70.0), (2.0, 69.0), (2.0, 75.0), (3.0, 74.0), (4.0, 80.0), (0.5, 60.0)]
    # (2, 69) is beaten by (1, 70); (3, 74) by (2, 75).
    assert pareto_front(points) == [5, 0, 2, 4]
    assert pareto_front([(1.0, float("nan")), (2.0, 50.0)]) == [1]


# Paired comparison with the baseline ---------------------------------------------------

# Per-seed top-1 of a method and of the baseline on the same seeds (seed 3: baseline only).
METHOD = {0: 73.5, 1: 73.9, 2: 73.2, 4: 74.4, 5: 73.0, 6: 74.1}
BASELINE = {0: 72.1, 1: 72.6, 2: 72.4, 3: 71.0, 4: 72.9, 5: 72.8, 6: 72.2}


def test_paired_statistics_equal_scipys_on_shared_seeds():
    from scipy import stats

    from kdbench.reporting.stats import paired

    seeds = sorted(METHOD)  # the shared ones: seed 3 has no method result
    a, b = [METHOD[s] for s in seeds], [BASELINE[s] for s in seeds]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    result = paired(METHOD, BASELINE)
    assert result.n == 6
    assert result.mean == pytest.approx(statistics.fmean(diffs), abs=1e-12)
    half = stats.t.ppf(0.975, 5) * statistics.stdev(diffs) / math.sqrt(6)
    assert result.ci == pytest.approx(half, rel=1e-9)
    assert result.p_t == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert result.p_wilcoxon == pytest.approx(stats.wilcoxon(diffs).pvalue, rel=1e-9)
    assert result.better() is True


def test_paired_test_is_stronger_than_overlapping_intervals():
    """Seed effects shared by both methods overlap the two intervals, yet every seed
    improves by about the same amount: the paired test calls it better."""
    from kdbench.reporting.stats import paired

    base = {0: 70.0, 1: 72.0, 2: 74.0}
    method = {0: 70.5, 1: 72.6, 2: 74.4}
    assert intervals_overlap(seed_stats(list(method.values())), seed_stats(list(base.values())))
    result = paired(method, base)
    assert result.p_t < 0.05 and result.better() is True


def test_paired_statistics_undefined_below_two_seeds_or_without_spread():
    from kdbench.reporting.stats import paired

    one = paired({0: 74.0, 1: 75.0}, {0: 72.0})
    assert one.n == 1 and one.mean == 2.0 and math.isnan(one.p_t) and one.better() is None
    constant = paired({0: 73.0, 1: 74.0}, {0: 72.0, 1: 73.0})
    assert constant.mean == 1.0 and math.isnan(constant.p_t) and math.isnan(constant.p_wilcoxon)
    assert paired({0: 1.0}, {1: 2.0}).n == 0


def test_a_worse_method_is_never_called_better():
    from kdbench.reporting.stats import paired

    worse = paired({s: BASELINE[s] - 1 - 0.1 * s for s in METHOD}, BASELINE)
    assert worse.p_t < 0.05 and worse.better() is False


def paired_samples() -> list[tuple[list[float], list[float]]]:
    """Paired accuracies as runs give them: 2 to 60 seeds, read to 0.01 % (often tied
    differences, sometimes zero ones) or as any float (never tied)."""
    import random

    rng = random.Random(0)
    samples = []
    for i in range(300):
        n = rng.randint(2, 8) if i % 5 else rng.randint(14, 60)
        if i % 2:
            draw = [(rng.gauss(80, 3), rng.gauss(79, 3)) for _ in range(n)]
        else:
            draw = [(rng.randint(8000, 8012) / 100, rng.randint(8000, 8012) / 100)
                    for _ in range(n)]  # fmt: skip
        samples.append(([a for a, _ in draw], [b for _, b in draw]))
    return samples


def test_paired_p_values_are_scipys_to_the_last_bit():
    """The published leaderboards print these floats: computed without importing
    scipy.stats, they must still be exactly the ones scipy gives."""
    from scipy import stats

    from kdbench.reporting.stats import paired_t_p, wilcoxon_p

    tested = {"t": 0, "exact": 0, "flips": 0, "scipy": 0}
    for a, b in paired_samples():
        diffs = [x - y for x, y in zip(a, b, strict=True)]
        if statistics.pstdev(diffs) > 1e-9:
            assert paired_t_p(a, b) == float(stats.ttest_rel(a, b).pvalue), (a, b)
            tested["t"] += 1
        if any(diffs):
            assert wilcoxon_p(diffs) == float(stats.wilcoxon(diffs).pvalue), diffs
            tied = len({abs(d) for d in diffs}) < len(diffs)
            path = "scipy" if 0 in diffs or len(diffs) > (13 if tied else 50) else None
            tested[path or ("flips" if tied else "exact")] += 1
    assert min(tested.values()) >= 20, tested  # every way to a p-value was compared
