"""Benchmark: how often each keep/revert rule keeps noise, and what it still finds.

Synthetic hill-climbs with known true effects under noise of a known size: most mutations do
nothing, some help, some hurt. Two objectives:

- metric: val_bpb (minimize) whose every evaluation moves by a seed's jitter (sd 0.002);
- checklist: 4 yes/no items × 8 inputs × 3 samples, answered by judges that flip 10% of answers.

Every decision goes through the real policies of engine/decide.py, exactly as the loop drives
them: `keep_going` between repeats (early stop, confirmation), `decide`, `learn`, the
`RetestQueue`, `reevaluate` every K candidates. Printed per rule, with ratios against
`greater` (the original autoresearch rule) measured in the same run: the false-keep rate (kept,
but truly no better), the true-keep rate (kept among the true improvements), evaluations spent
per true improvement kept, and the true gain the climb reached.

    python bench/noise.py [--runs 120] [--rounds 30] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import spec as specs  # noqa: E402
from engine.decide import build_policy  # noqa: E402
from engine.model import KEPT, RETEST, Evaluation, ItemResult, Mutation  # noqa: E402
from engine.noise import RetestQueue, reeval_due  # noqa: E402

#: Share of proposals that do nothing, help, hurt.
NULL, HELP = 0.6, 0.2

# ---------------------------------------------------------------- objectives


class Metric:
    """val_bpb around 1.0, minimized; each evaluation adds seed noise of sd 0.002."""

    name = "metric: val_bpb (minimize), seed noise sd 0.002"
    direction = "minimize"
    sd = 0.002

    def start(self, rng: random.Random) -> float:
        return 1.0

    def propose(self, state: float, rng: random.Random) -> float:
        draw = rng.random()
        if draw < NULL:
            return state
        if draw < NULL + HELP:
            return state - rng.uniform(1, 3) * self.sd  # helps by 1-3 noise sd
        return state + rng.uniform(1, 4) * self.sd  # hurts by 1-4 noise sd

    def gain(self, new: float, old: float) -> float:
        return old - new

    def evaluate(self, state: float, rng: random.Random) -> Evaluation:
        return Evaluation("ok", score=rng.gauss(state, self.sd))


class Checklist:
    """Pass probabilities per item × input; a judge flips each answer with probability 0.1."""

    name = "checklist: 4 items × 8 inputs × 3 samples, judges flip 10% of answers"
    direction = "maximize"
    items, inputs, samples, flip = 4, 8, 3, 0.10

    def start(self, rng: random.Random) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(min(0.95, max(0.05, base + rng.uniform(-0.15, 0.15)))
                           for _ in range(self.inputs))
                     for base in (rng.uniform(0.25, 0.6) for _ in range(self.items)))

    def propose(self, state: tuple, rng: random.Random) -> tuple:
        draw = rng.random()
        if draw < NULL:
            return state  # e.g. a rewording that changes nothing the judges care about
        item = rng.randrange(self.items)
        step = rng.uniform(0.2, 0.7) * (1 if draw < NULL + HELP else -1)
        moved = tuple(min(0.98, max(0.02, p + step)) for p in state[item])
        return state[:item] + (moved,) + state[item + 1:]

    def expected(self, state: tuple) -> float:
        f = self.flip
        return sum(p * (1 - f) + (1 - p) * f for row in state for p in row) / (
            self.items * self.inputs)

    def gain(self, new: tuple, old: tuple) -> float:
        return self.expected(new) - self.expected(old)

    def evaluate(self, state: tuple, rng: random.Random) -> Evaluation:
        items, passed, f = [], 0, self.flip
        for i, row in enumerate(state):
            for j, p in enumerate(row):
                for s in range(self.samples):
                    answer = (rng.random() < p) != (rng.random() < f)
                    passed += answer
                    items.append(ItemResult(f"item{i}", answer, f"input{j}", s))
        return Evaluation("ok", score=passed / len(items), items=items)


# ---------------------------------------------------------------- one climb


@dataclass
class Tally:
    """Outcomes of every proposal decided, summed over runs."""

    not_better: int = 0
    false_keeps: int = 0
    better: int = 0
    true_keeps: int = 0
    evaluations: int = 0
    true_gain: float = 0.0
    retests: int = 0
    reevals: int = 0

    def add_outcome(self, gain: float, kept: bool) -> None:
        if gain > 1e-12:
            self.better += 1
            self.true_keeps += kept
        else:
            self.not_better += 1
            self.false_keeps += kept


def climb(objective: Any, config: specs.Decide, seed: int, rounds: int, tally: Tally) -> None:
    """One run: baseline (noise floor), then `rounds` candidates, decided by the real policy."""
    proposals, noise = random.Random(seed), random.Random(seed * 7919 + 17)
    policy, queue = build_policy(config), RetestQueue(config.retest)
    direction = objective.direction

    def evaluate(state: Any) -> Evaluation:
        tally.evaluations += 1
        return objective.evaluate(state, noise)

    start = best = objective.start(proposals)
    best_evals = [evaluate(best) for _ in range(policy.baseline_repeats)]
    policy.measure_noise(best_evals)
    best_id, next_id, since = 0, 1, 0
    for _ in range(rounds):
        if reeval_due(config.reeval_every, since):
            fresh = [evaluate(best) for _ in range(policy.baseline_repeats)]
            policy.reevaluate(best_evals, fresh, direction)
            policy.learn(fresh)
            best_evals, since = policy.reevaluated(best_evals, fresh), 0
            tally.reevals += 1
        entry, _ = queue.next(best_id)
        if entry is not None:
            mutation, attempt = entry.mutation, entry.attempt + 1
            tally.retests += 1
        else:
            version = objective.propose(best, proposals)
            mutation = Mutation("synthetic", {}, state={"version": version,
                                                        "gain": objective.gain(version, best)})
            attempt = 0
        version = mutation.state["version"]
        evals = [evaluate(version)]
        while policy.keep_going(evals, best_evals, direction):
            evals.append(evaluate(version))
        decision = policy.decide(evals, best_evals, direction)
        decision = queue.offer(decision, next_id, mutation, best_id, attempt)
        policy.learn(evals)
        since += 1
        if decision.verdict == KEPT:
            best, best_evals, best_id, since = version, policy.incumbent(evals), next_id, 0
        if decision.verdict != RETEST:
            tally.add_outcome(mutation.state["gain"], decision.verdict == KEPT)
        next_id += 1
    tally.true_gain += objective.gain(best, start)


# ---------------------------------------------------------------- rules and report


RULES: list[tuple[str, dict[str, Any]]] = [
    ("greater (autoresearch)", {"rule": "greater", "noise_repeats": 1}),
    ("greater, 3 repeats", {"rule": "greater", "repeats": 3}),
    ("margin, 3 repeats", {"rule": "margin", "repeats": 3}),
    ("margin, 3 rep, confirm, reeval 5", {"rule": "margin", "repeats": 3, "confirm": True,
                                          "reeval_every": 5}),
    ("paired, 3 repeats", {"rule": "paired", "repeats": 3}),
    ("paired, 3 rep, confirm, reeval 5", {"rule": "paired", "repeats": 3, "confirm": True,
                                          "reeval_every": 5}),
]
TARGET_RULES = ("margin", "paired")


def bench(objective: Any, runs: int, rounds: int, seed: int) -> dict[str, Tally]:
    out = {}
    for label, fields in RULES:
        config = specs.Decide(**fields)
        tally = Tally()
        for run in range(runs):
            climb(objective, config, seed * 100_003 + run, rounds, tally)
        out[label] = tally
    return out


def _ratio(value: float, base: float) -> str:
    return f"{value / base:5.2f}" if base else "  -  "


def report(objective: Any, results: dict[str, Tally], runs: int) -> list[str]:
    """Print the table; returns the rows of margin and paired rules that miss the target."""
    base = results[RULES[0][0]]
    base_true = base.true_keeps / max(base.better, 1)
    base_cost = base.evaluations / max(base.true_keeps, 1)
    base_gain = base.true_gain / runs
    print(f"\n{objective.name}")
    print(f"{'rule':<34}{'false-keep':>11}{'true-keep':>11}{'×greater':>9}"
          f"{'evals/true keep':>17}{'×greater':>9}{'true gain':>11}{'×greater':>9}  target")
    missed = []
    for label, t in results.items():
        false_rate = t.false_keeps / max(t.not_better, 1)
        true_rate = t.true_keeps / max(t.better, 1)
        cost = t.evaluations / max(t.true_keeps, 1)
        gain = t.true_gain / runs
        verdict = ""
        if label.split(",")[0] in TARGET_RULES:
            found = true_rate / base_true if base_true else 0.0
            ok = false_rate <= 0.05 and found >= 0.8
            verdict = "met" if ok else f"missed ({false_rate:.1%} false, finds {found:.0%})"
            if not ok:
                missed.append(label)
        print(f"{label:<34}{false_rate:>11.1%}{true_rate:>11.1%}{_ratio(true_rate, base_true):>9}"
              f"{cost:>17.1f}{_ratio(cost, base_cost):>9}{gain:>11.3g}{_ratio(gain, base_gain):>9}"
              f"  {verdict}")
    print(f"  ({base.not_better + base.better} proposals decided per rule: "
          f"{base.not_better} no better, {base.better} better, with greater)")
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=120, help="hill-climbs per rule")
    parser.add_argument("--rounds", type=int, default=30, help="candidates per climb")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"{args.runs} climbs × {args.rounds} rounds per rule and objective; proposals: "
          f"{NULL:.0%} do nothing, {HELP:.0%} help by 1-3 noise sd, {1 - NULL - HELP:.0%} hurt")
    missed: set[str] = set()
    for objective in (Metric(), Checklist()):
        missed |= set(report(objective, bench(objective, args.runs, args.rounds, args.seed),
                             args.runs))
    met = [label for label, _ in RULES if label.split(",")[0] in TARGET_RULES and label not in missed]
    print("\ntarget (false-keep ≤ 5% and true-keep ≥ 0.80 × greater, on both objectives): met by "
          + ("; ".join(met) or "none") + (f"; missed by {'; '.join(sorted(missed))}" if missed else ""))
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
