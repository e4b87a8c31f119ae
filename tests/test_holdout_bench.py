"""bench/holdout.py runs, and the alert's false-alarm rate on honest runs stays small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_holdout_bench_prints_catch_and_false_alarm_rates():
    out = subprocess.run([sys.executable, str(ROOT / "bench/holdout.py"), "--runs", "30"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "caught within 5 rounds" in out
    line = next(x for x in out.splitlines() if "false alarms on honest runs" in x)
    assert float(line.split("runs")[1].split("%")[0]) <= 10


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_holdout", ROOT / "bench/holdout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_alert_catches_gaming_soon_and_rarely_fires_on_honest_runs():
    """The detector itself on the bench's simulated sequences at its default settings
    (in-process, 400 + 400 runs, seed 1): the 1/k² spending caught 87.0% within 5 rounds;
    spread over a horizon it must reach the issue's 90% while honest runs stay under 5%."""
    import random

    bench = _bench()
    rng = random.Random(1)
    runs = 400
    caught = false = 0
    for _ in range(runs):
        onset, fired, _ = bench.simulate(rng, True, 120, 1, 2.0)
        caught += fired is not None and 0 <= fired - onset < bench.WITHIN
    for _ in range(runs):
        false += bench.simulate(rng, False, 120, 1, 2.0)[1] is not None
    assert caught / runs >= 0.90
    assert false / runs <= 0.05


def test_the_false_alarm_budget_is_spent_once_over_any_length_of_run():
    """The shares of z's tail the checks spend sum to at most the whole (a union bound: the
    run's false-alarm rate stays within z's tail), and the first check, which compares one
    scoring with one, no longer takes most of it."""
    from engine.holdout import spent_share

    total = sum(spent_share(k) for k in range(1, 200_000))
    assert 0.99 < total <= 1.0
    assert spent_share(1) < 0.2
    assert all(spent_share(k) > spent_share(k + 1) for k in range(1, 100))
