"""The arithmetic of a library's scheduler, with no clock and no event loop: each run's
record (`Arm`) and the choice of whose round is next (`Policy`: expected gain per dollar with
an exploration bonus, UCB1, and plateau rests). engine/scheduler.py runs it; bench/scheduler.py
simulates it against round-robin with the same code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

_rounds = attrgetter("rounds")

#: How much each round's record weighs against the ones before (recent rounds count more).
DECAY = 0.9


@dataclass(eq=False)
class Arm:
    """One run's record, as the policy sees it."""

    run_id: int
    name: str = ""
    rounds: int = 0  # rounds given since the run joined (or its file changed)
    weight: float = 0.0  # discounted rounds
    gain: float = 0.0  # discounted gain, relative to the best before it
    cost: float = 0.0  # discounted money
    since_keep: int = 0
    resting_since: float | None = None
    #: Rests in a row without a keep between them: each rest is twice as long, and the
    #: visit after one is a short probe, not a new plateau's worth of rounds.
    rests: int = 0
    mark: Any = None  # what the run's file looked like when it went to rest

    def wake(self) -> None:
        """Tried again as if new: its old record says nothing of the file it has now."""
        self.rounds, self.weight, self.gain, self.cost, self.since_keep = 0, 0.0, 0.0, 0.0, 0
        self.resting_since, self.mark, self.rests = None, None, 0


@dataclass
class Policy:
    """Expected gain per dollar with an exploration bonus (UCB1), and plateau rests."""

    explore: float = 0.5
    rest_after: int = 10
    rest_s: float = 3600.0
    decay: float = DECAY
    total: int = 0  # rounds given to every arm
    #: The longest rest, as a multiple of rest_s.
    max_backoff: int = 16
    #: Rounds every arm gets before its record counts.
    tries: int = 3

    def observe(self, arm: Arm, gain: float, cost: float, now: float) -> None:
        """A round of `arm` ended: `gain` > 0 when it kept something (relative size)."""
        self.total += 1
        arm.rounds += 1
        arm.weight = self.decay * arm.weight + 1
        arm.gain = self.decay * arm.gain + max(gain, 0.0)
        arm.cost = self.decay * arm.cost + max(cost, 0.0)
        if gain > 0:
            arm.since_keep, arm.rests = 0, 0
        else:
            arm.since_keep += 1
        limit = self.rest_after if arm.rests == 0 else max(1, self.rest_after // 3)
        if arm.since_keep >= limit:
            arm.resting_since, arm.rests = now, arm.rests + 1

    def rest_until(self, arm: Arm) -> float:
        assert arm.resting_since is not None
        return arm.resting_since + self.rest_s * min(2 ** (arm.rests - 1), self.max_backoff)

    def ready(self, arm: Arm, now: float, changed: bool = False) -> bool:
        """May `arm` have a round now? A resting one wakes when its rest is over (for a
        probe) or at once when its file changed (as new)."""
        if arm.resting_since is None:
            return True
        if changed:
            arm.wake()
            return True
        if now >= self.rest_until(arm):
            self.revisit(arm)
            return True
        return False

    @staticmethod
    def revisit(arm: Arm) -> None:
        """A resting arm's probe: a few rounds (its record and back-off kept)."""
        arm.resting_since, arm.since_keep = None, 0

    def pick(self, arms: list[Arm]) -> Arm:
        """The arm to give the next round: one tried fewer than `tries` times first (fewest
        first, in the order given: one unlucky round says little), then the best UCB."""
        fewest = min(arms, key=_rounds)
        if fewest.rounds < self.tries:
            return fewest
        rates = [a.cost / a.weight for a in arms if a.cost > 0]
        unit = sum(rates) / len(rates) if rates else 1.0  # unknown costs: the library's mean
        values = [(a.gain / a.weight) / (a.cost / a.weight if a.cost > 0 else unit)
                  for a in arms]
        top = max(values) or 1.0
        log_total = math.log(max(self.total, 2))
        explore, sqrt = self.explore, math.sqrt  # (one pass in C: hundreds of arms a round)
        scores = [value / top + explore * sqrt(log_total / arm.rounds)
                  for arm, value in zip(arms, values, strict=True)]
        return arms[scores.index(max(scores))]  # the first of equals, as before
