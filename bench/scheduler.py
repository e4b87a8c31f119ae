"""The library scheduler against round-robin, on a simulated library where a known fifth of
the runs can improve (engine/scheduler.py's Policy, the same code the host uses).

Every run costs money a round (each its own price); an improving run keeps a change with
some probability, gains shrinking as it climbs; the others only ever keep noise (a rare
keep of a tiny gain). Both schedulers spend the same budget over `max_parallel` slots,
rounds of one simulated minute. Printed: the budget spent on the runs that cannot improve,
scheduler against round-robin (target ≤ 0.5×), and the gain each reached.

    python bench/scheduler.py                  # 100 runs, 5 seeds
    python bench/scheduler.py --runs 200 --seeds 10
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.scheduler import Arm, Policy  # noqa: E402


@dataclass
class SimRun:
    """A simulated run: its price a round and its chance to keep something."""

    price: float
    can_improve: bool
    p_keep: float
    gain: float
    keeps: int = 0

    def round(self, rng: random.Random) -> float:
        """The relative gain of one round (0: nothing kept)."""
        if self.can_improve and rng.random() < self.p_keep:
            self.keeps += 1
            return self.gain * 0.93 ** self.keeps  # diminishing returns
        if rng.random() < 0.02:  # noise that got past the decision rule
            return 1e-4
        return 0.0


def library(n: int, rng: random.Random) -> list[SimRun]:
    runs = [SimRun(price=rng.uniform(0.005, 0.02), can_improve=i % 5 == 0,
                   p_keep=rng.uniform(0.15, 0.5), gain=rng.uniform(0.02, 0.1))
            for i in range(n)]
    rng.shuffle(runs)
    return runs


def simulate(kind: str, n: int, seed: int, budget_rounds: int, slots: int) -> dict:
    rng = random.Random(seed)
    runs = library(n, random.Random(seed))
    budget = budget_rounds * statistics.mean(r.price for r in runs)
    policy = Policy(explore=0.5, rest_after=10, rest_s=60 * 60)
    arms = [Arm(i) for i in range(n)]
    spent = wasted = gained = 0.0
    rr, now, rounds = 0, 0.0, [0] * n
    while spent < budget:
        now += 60.0 / slots  # a slot frees every 1/slots minutes
        if kind == "round-robin":
            i, rr = rr, (rr + 1) % n
        else:
            ready = [a for a in arms if policy.ready(a, now)]
            if not ready:  # every run rests: the money waits too
                continue
            i = policy.pick(ready).run_id
        run = runs[i]
        gain = run.round(rng)
        if kind != "round-robin":
            policy.observe(arms[i], gain, run.price, now)
        spent += run.price
        wasted += 0 if run.can_improve else run.price
        gained += gain
        rounds[i] += 1
    return {"spent": spent, "wasted": wasted, "gained": gained, "min_rounds": min(rounds),
            "hours": now / 3600}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30, help="budget: rounds per run")
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    ratios, gains = [], []
    for seed in range(args.seeds):
        rr = simulate("round-robin", args.runs, seed, args.rounds * args.runs, args.slots)
        ucb = simulate("scheduler", args.runs, seed, args.rounds * args.runs, args.slots)
        ratios.append(ucb["wasted"] / rr["wasted"])
        gains.append(ucb["gained"] / rr["gained"])
        print(f"seed {seed}: spent on runs that cannot improve: round-robin "
              f"${rr['wasted']:.2f} of ${rr['spent']:.2f}, scheduler ${ucb['wasted']:.2f} of "
              f"${ucb['spent']:.2f} ({ratios[-1]:.2f}×); gain reached {gains[-1]:.2f}× "
              f"round-robin's; fewest rounds a run got: {ucb['min_rounds']}", flush=True)
    print(f"budget spent on runs that cannot improve, scheduler vs round-robin: "
          f"{statistics.mean(ratios):.2f}× (target ≤ 0.5×); gain reached "
          f"{statistics.mean(gains):.2f}× round-robin's")


if __name__ == "__main__":
    main()
