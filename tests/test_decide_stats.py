"""The statistics behind the verdicts, checked against brute force: every sign pattern counted,
every binomial outcome summed, the t tail integrated numerically."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import stats


def brute_sign_test(wins: int, losses: int) -> float:
    n = wins + losses
    return sum(1 for signs in itertools.product((0, 1), repeat=n) if sum(signs) >= wins) / 2**n


def brute_wilcoxon(diffs: list[float]) -> float:
    """P(W+ >= observed) over all 2^n sign flips of the non-zero differences (midranks)."""
    nonzero = [d for d in diffs if d != 0]
    ranks = stats.midranks([abs(d) for d in nonzero])
    observed = sum(r for d, r in zip(nonzero, ranks, strict=True) if d > 0)
    hits = sum(1 for signs in itertools.product((0, 1), repeat=len(nonzero))
               if sum(r for s, r in zip(signs, ranks, strict=True) if s) >= observed - 1e-9)
    return hits / 2 ** len(nonzero)


@settings(deadline=None)
@given(st.integers(0, 8), st.integers(0, 8))
def test_sign_test_is_the_exact_binomial_tail(wins: int, losses: int):
    assert stats.sign_test(wins, losses) == pytest.approx(
        brute_sign_test(wins, losses) if wins + losses else 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-1.0, -2 / 3, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0]),
                min_size=1, max_size=12))
def test_wilcoxon_exact_counts_every_sign_pattern_even_with_ties(diffs: list[float]):
    assert stats.wilcoxon(diffs) == pytest.approx(brute_wilcoxon(diffs))


def test_wilcoxon_normal_approximation_agrees_with_the_exact_count_near_the_switch():
    rng = random.Random(5)
    for _ in range(20):
        diffs = [rng.choice([-1, -0.5, 0.5, 1, 1.5, 2]) for _ in range(stats.WILCOXON_EXACT_MAX)]
        exact = stats.wilcoxon(diffs)
        stats.WILCOXON_EXACT_MAX, saved = 0, stats.WILCOXON_EXACT_MAX
        try:
            approx = stats.wilcoxon(diffs)
        finally:
            stats.WILCOXON_EXACT_MAX = saved
        assert approx == pytest.approx(exact, abs=0.02)


def test_no_evidence_gives_p_of_one():
    assert stats.sign_test(0, 0) == 1.0
    assert stats.wilcoxon([0.0, 0.0]) == 1.0
    assert stats.binom_sf(0, 5) == 1.0 and stats.binom_sf(6, 5) == 0.0


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 12, 40])
@pytest.mark.parametrize("t", [-1.5, 0.0, 0.7, 2.0, 4.5])
def test_t_tail_matches_numeric_integration(df: int, t: float):
    def pdf(x: float) -> float:
        return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(
            df * math.pi) * (1 + x * x / df) ** (-(df + 1) / 2)

    # P(T >= t) = 1/2 - integral from 0 to t (by symmetry), Simpson's rule on [0, |t|].
    n, a = 2000, abs(t)
    h = a / n if a else 1.0
    area = 0.0 if not a else h / 3 * (pdf(0) + pdf(a) + sum(
        (4 if i % 2 else 2) * pdf(i * h) for i in range(1, n)))
    expected = 0.5 - area if t >= 0 else 0.5 + area
    assert stats.t_sf(t, df) == pytest.approx(expected, abs=1e-7)


def test_t_multiplier_is_as_strict_as_z_and_tends_to_it():
    assert stats.t_multiplier(2.0, None) == 2.0
    assert stats.t_multiplier(2.0, 2) == pytest.approx(4.53, abs=0.01)
    assert stats.t_multiplier(2.0, 4) > stats.t_multiplier(2.0, 20) > 2.0
    assert stats.t_multiplier(2.0, 1000) == 2.0
    for df in (2, 5, 30):
        k = stats.t_multiplier(1.645, df)
        assert stats.t_sf(k, df) == pytest.approx(stats.normal_sf(1.645), rel=1e-6)


def test_mean_sd_and_median_standard_error():
    mean, sd = stats.mean_sd([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0)
    assert stats.mean_sd([4.0]) == (4.0, None)
    assert stats.se_of(2.0, 4) == 1.0
    assert stats.se_of(2.0, 4, "median") == pytest.approx(math.sqrt(math.pi / 2))
