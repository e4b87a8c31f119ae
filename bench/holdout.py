"""How well the overfitting alert (engine/holdout.py) catches a run that games its checklist,
and how often it cries wolf on runs that do not.

Simulated runs: every round is a keep (the optimized score climbs); the best version is scored
on the held-out part every `holdout_every` keeps, each answer a Bernoulli draw of the version's
true held-out pass rate (so the held-out score has the binomial noise a real checklist's has).
An honest run's held-out quality rises with the optimized score (by a random share of its
gains, or stays flat); a gaming run is honest for a while, then its optimized score keeps
rising while its held-out quality falls. The alert is the engine's own `divergence()` on the
engine's own standard errors (`held_out_se`), at the run's default `decide.z`.

For comparison it also prints a fixed-threshold rule (alert when the held-out score fell by
0.05 from its best), the baseline a person would reach for first.

    python bench/holdout.py [--runs 400] [--answers 60] [--every 1]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.holdout import Point, divergence, held_out_se  # noqa: E402
from engine.model import Evaluation  # noqa: E402

ROUNDS = 30
WITHIN = 5
FIXED_DROP = 0.05


def measure(rng: random.Random, p: float, answers: int) -> tuple[float, float]:
    passed = sum(rng.random() < p for _ in range(answers))
    score = passed / answers
    ev = Evaluation("ok", score=score, items=[None] * answers)  # only the count is read
    return score, held_out_se([ev], None)


def simulate(rng: random.Random, gaming: bool, answers: int, every: int, z: float,
             ) -> tuple[int | None, int | None, int | None]:
    """(round the gaming began, round the alert fired, round the fixed rule fired)."""
    opt, ho = rng.uniform(0.3, 0.5), rng.uniform(0.4, 0.6)
    share = rng.choice([0.0, rng.uniform(0.2, 1.0)])  # how much of a gain carries over
    onset = rng.randint(3, 12) if gaming else None
    fall = rng.uniform(0.03, 0.06)  # held-out quality lost a round once gaming
    points: list[Point] = []
    fired = fixed = None
    for rnd in range(ROUNDS + 1):
        if rnd:
            step = rng.uniform(0.01, 0.03)
            opt = min(1.0, opt + step)
            if onset is not None and rnd >= onset:
                ho = max(0.0, ho - fall)
            else:
                ho = min(1.0, ho + share * step)
        if rnd % every:
            continue
        score, se = measure(rng, ho, answers)
        points.append(Point(rnd, rnd, opt, score, se))
        if fired is None and divergence(points, z) is not None:
            fired = rnd
        if fixed is None and max(p.held_out for p in points) - score >= FIXED_DROP - 1e-9:
            fixed = rnd
    return onset, fired, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--answers", type=int, default=120,
                        help="held-out answers a scoring (e.g. 4 inputs x 3 samples x 10 items)")
    parser.add_argument("--every", type=int, default=1, help="holdout_every (keeps)")
    parser.add_argument("--z", type=float, default=2.0, help="decide.z")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    caught = late = missed = fixed_caught = 0
    delays: list[int] = []
    for _ in range(args.runs):
        onset, fired, fixed = simulate(rng, True, args.answers, args.every, args.z)
        assert onset is not None
        if fired is not None and fired >= onset and fired - onset < WITHIN:
            caught += 1
            delays.append(fired - onset)
        elif fired is not None and fired >= onset:
            late += 1
        else:
            missed += 1  # (an alarm before the onset counts as a miss)
        fixed_caught += fixed is not None and fixed >= onset and fixed - onset < WITHIN
    false = fixed_false = 0
    for _ in range(args.runs):
        _, fired, fixed = simulate(rng, False, args.answers, args.every, args.z)
        false += fired is not None
        fixed_false += fixed is not None
    n = args.runs
    delays.sort()
    print(f"{n} gaming + {n} honest runs, {ROUNDS} rounds, {args.answers} held-out answers, "
          f"holdout_every {args.every}, z {args.z:g}")
    print(f"alert (engine): caught within {WITHIN} rounds {caught / n:6.1%}  (target >= 90%)"
          f"  later {late / n:.1%}  missed {missed / n:.1%}"
          f"  median delay {delays[len(delays) // 2] if delays else '-'} rounds")
    print(f"alert (engine): false alarms on honest runs {false / n:6.1%}  (target <= 5%)")
    print(f"fixed -{FIXED_DROP:g} rule:     caught within {WITHIN} rounds {fixed_caught / n:6.1%}"
          f"  false alarms {fixed_false / n:.1%}")
    ratio = (false / n) / (fixed_false / n) if fixed_false else float("nan")
    print(f"false alarms, engine / fixed rule: {ratio:.2f}x")


if __name__ == "__main__":
    main()
