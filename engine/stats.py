"""The few statistics the keep/revert policies need, in plain Python (no scipy).

Exact where it is cheap: the sign test (McNemar's test on discordant pairs is the same test)
is an exact binomial tail, and the Wilcoxon signed-rank test is exact for small samples by
counting sign patterns over (mid)ranks; larger samples use the normal approximation with the
tie and continuity corrections. The Cochran–Mantel–Haenszel test pairs answers whose candidate
and best were evaluated a different number of times. Student's t tail is an exact finite series. Every p-value here is one-sided: "the differences tend to be
positive".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

#: Up to this many non-zero differences the Wilcoxon test counts sign patterns exactly.
WILCOXON_EXACT_MAX = 30
#: Standard error of a sample median over that of a mean, for normal noise (sqrt(pi/2)).
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)


def normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def binom_sf(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, any n)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact sign test: p of at least `wins` wins among the untied pairs by chance."""
    return binom_sf(wins, wins + losses) if wins + losses else 1.0


def midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n of the values, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon(diffs: Iterable[float]) -> float:
    """One-sided Wilcoxon signed-rank test that the differences tend to be positive.

    Zero differences are dropped (Wilcoxon's convention). The exact null distribution
    conditions on the observed midranks, so ties keep the test valid.
    """
    nonzero = [d for d in diffs if d != 0]
    n = len(nonzero)
    if n == 0:
        return 1.0
    ranks = midranks([abs(d) for d in nonzero])
    w_plus = sum(r for d, r in zip(nonzero, ranks, strict=True) if d > 0)
    if n <= WILCOXON_EXACT_MAX:
        # Count the sign patterns whose sum of doubled midranks reaches the observed one: the
        # polynomial prod(1 + x^r) held in one big integer, a (n + 2)-bit slot per coefficient
        # (every count is at most 2^n), so summing a tail of slots is one modulo.
        width = n + 2
        poly = 1
        for r in ranks:
            poly += poly << (width * round(2 * r))
        at_least = (poly >> (width * round(2 * w_plus))) % ((1 << width) - 1)
        return at_least / 2**n
    ties: dict[float, int] = {}
    for r in ranks:
        ties[r] = ties.get(r, 0) + 1
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties.values()) / 48
    if var <= 0:
        return 1.0
    return normal_sf((w_plus - mean - 0.5) / math.sqrt(var))


def cmh(strata: Iterable[tuple[int, int, int, int]]) -> float:
    """One-sided Cochran–Mantel–Haenszel test that the first group passes more often.

    Each stratum is (passes_a, trials_a, passes_b, trials_b), e.g. one checklist answer's
    candidate and best over their repeats: a McNemar test stratified by answer that allows
    unequal repeats. Under the null the pooled answers of a stratum are exchangeable, so
    passes_a is hypergeometric; the sum over strata is compared with its normal approximation
    (continuity-corrected).
    """
    excess, variance = 0.0, 0.0
    for passes_a, trials_a, passes_b, trials_b in strata:
        total, passes = trials_a + trials_b, passes_a + passes_b
        if total < 2 or passes in (0, total):
            continue
        excess += passes_a - trials_a * passes / total
        variance += trials_a * trials_b * passes * (total - passes) / (total**2 * (total - 1))
    if variance <= 0:
        return 1.0
    return normal_sf((excess - 0.5) / math.sqrt(variance))


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None with fewer than two values)."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def se_of(sd: float, n: int, how: str = "mean") -> float:
    """Standard error of the mean (or, approximately, the median) of n values with this sd."""
    factor = MEDIAN_SE_FACTOR if how == "median" and n >= 3 else 1.0
    return factor * sd / math.sqrt(n)


def t_sf(t: float, df: int) -> float:
    """P(T >= t) for Student's t with integer `df` degrees of freedom (exact finite series,
    Abramowitz & Stegun 26.7.3-4); the normal tail beyond 300 df."""
    if df <= 0:
        raise ValueError("df must be positive")
    if df > 300:
        return normal_sf(t)
    theta = math.atan(abs(t) / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:  # odd: A = 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2·4/(3·5) cos^4 + ...))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        inside = 2 / math.pi * (theta + s * math.cos(theta) * total)
    else:  # even: A = sin (1 + 1/2 cos^2 + 1·3/(2·4) cos^4 + ...)
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        inside = s * total
    tail = max(0.0, (1 - inside) / 2)
    return tail if t >= 0 else 1 - tail


@lru_cache(maxsize=512)
def t_multiplier(z: float, df: int | None) -> float:
    """The Student-t multiplier as strict as `z` is for a known sd: the same one-sided tail
    when the sd is estimated with `df` degrees of freedom (None: the sd is known, return z)."""
    if df is None or df > 300:
        return z
    target = normal_sf(z)
    lo, hi = z, z
    while t_sf(hi, df) > target:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf(mid, df) > target else (lo, mid)
    return hi
