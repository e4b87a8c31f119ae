"""Time count_primes(N), best of three, and check its answer.

Prints `METRIC ms=<milliseconds>`; a wrong answer exits 1, so a fast but wrong version
crashes instead of winning.
"""

import sys
import time

from primes import count_primes

N, EXPECTED = 3000, 430  # there are 430 primes below 3,000

best = float("inf")
for _ in range(3):
    started = time.perf_counter()
    got = count_primes(N)
    best = min(best, time.perf_counter() - started)
    if got != EXPECTED:
        print(f"wrong answer: count_primes({N}) = {got}, expected {EXPECTED}")
        sys.exit(1)
print(f"METRIC ms={best * 1000:.3f}")
