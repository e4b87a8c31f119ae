"""What the loop keeps around its decisions: the noise floor of a run, the retest queue of
marginal candidates, and the best version's evaluations across restarts.

The noise floor is the baseline evaluated several times when the run starts; every version
evaluated more than once afterwards (a candidate's repeats, a re-evaluation of the best) refines
it. It is stored as JSON in `runs.noise_json` and shown by the UI.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine import stats
from engine.model import RETEST, REVERTED, Decision, Evaluation, Mutation

#: Marginal candidates waiting for a retest, at most.
RETEST_QUEUE = 8


def scores(evals: Sequence[Evaluation]) -> list[float]:
    return [e.score for e in evals if e.score is not None]


def ok_evaluations(evals: Sequence[Evaluation]) -> list[Evaluation]:
    return [e for e in evals if e.status == "ok" and e.score is not None]


def _g(value: float) -> str:
    return f"{value:.3g}"


def item_sd(evals: Sequence[Evaluation]) -> float | None:
    """The binomial sd of a pass rate over an evaluation's answers (checklists, test suites)."""
    variances = [e.score * (1 - e.score) / len(e.items) for e in evals
                 if e.items and e.score is not None and 0 <= e.score <= 1]
    return math.sqrt(statistics.fmean(variances)) if variances else None


@dataclass
class NoiseFloor:
    """How much a version's score moves between evaluations: measured on the baseline when the
    run starts, then refined by every version evaluated more than once (repeats, re-evaluations)."""

    repeats: int
    mean: float | None
    sd: float | None
    scores: list[float]
    aggregate: str = "mean"
    #: The binomial sd of one evaluation's pass rate, for checklists and test suites.
    item_sd: float | None = None
    #: Within-version sum of squares and degrees of freedom over every repeated evaluation.
    ss: float = 0.0
    df: int = 0

    @classmethod
    def measure(cls, evals: Sequence[Evaluation], how: str = "mean") -> NoiseFloor:
        values = scores(ok_evaluations(evals))
        mean, sd = stats.mean_sd(values) if values else (None, None)
        floor = cls(len(values), mean, sd, values, how, item_sd(ok_evaluations(evals)[:1]))
        floor.learn(values)
        return floor

    def learn(self, values: Sequence[float]) -> bool:
        """Add one version's repeated scores to the pooled estimate (True when they count)."""
        if len(values) < 2:
            return False
        mean = math.fsum(values) / len(values)
        self.ss += math.fsum((v - mean) ** 2 for v in values)
        self.df += len(values) - 1
        return True

    @property
    def pooled_sd(self) -> float | None:
        return math.sqrt(self.ss / self.df) if self.df else None

    def to_json(self) -> str:
        se = None if self.sd is None else stats.se_of(self.sd, self.repeats, self.aggregate)
        return json.dumps({"repeats": self.repeats, "mean": self.mean, "sd": self.sd, "se": se,
                           "scores": self.scores, "aggregate": self.aggregate,
                           "item_sd": self.item_sd, "pooled_sd": self.pooled_sd,
                           "ss": self.ss, "df": self.df})

    @classmethod
    def from_json(cls, text: str | None) -> NoiseFloor | None:
        if not text:
            return None
        data = json.loads(text)
        floor = cls(data["repeats"], data.get("mean"), data.get("sd"),
                    list(data.get("scores", [])), data.get("aggregate", "mean"),
                    data.get("item_sd"), data.get("ss", 0.0), data.get("df", 0))
        if not floor.df:
            floor.learn(floor.scores)
        return floor

    def describe(self) -> str:
        if self.sd is not None:
            return (f"noise floor: sd {_g(self.sd)} over {self.repeats} baseline evaluations "
                    f"(mean {_g(self.mean or 0)})")
        extra = f"; binomial sd {_g(self.item_sd)} of one pass rate" if self.item_sd else ""
        return (f"noise floor not measured: {self.repeats} baseline evaluation"
                f" (set decide.noise_repeats of 2 or more){extra}")


def restore_evaluations(score: float | None, decision_json: str | None,
                        items: list[Any]) -> list[Evaluation]:
    """The best version's evaluations rebuilt from the store after a resume: every repeat's
    score (kept in the decision details), the item results on the first."""
    details = json.loads(decision_json) if decision_json else {}
    kept = details.get("incumbent_scores") or details.get("scores") or []
    values = [v for v in kept if isinstance(v, int | float)]
    if not values:
        return [Evaluation("ok", score=score, items=list(items))]
    evals = [Evaluation("ok", score=float(v)) for v in values]
    evals[0].items = list(items)
    return evals


# ---------------------------------------------------------------- retests


@dataclass
class Retest:
    """A marginal candidate waiting to be evaluated afresh against the same best version."""

    exp_id: int  # the experiment whose verdict was `retest`
    mutation: Mutation
    parent: int
    attempt: int  # retests of this mutation so far


class RetestQueue:
    """Marginal candidates, re-run before new proposals; bounded in length and in attempts."""

    def __init__(self, limit: int, size: int = RETEST_QUEUE) -> None:
        self.limit = limit
        self.size = size
        self.waiting: deque[Retest] = deque()

    def __len__(self) -> int:
        return len(self.waiting)

    def offer(self, decision: Decision, exp_id: int, mutation: Mutation, parent: int,
              attempt: int = 0, winner: int | None = None) -> Decision:
        """Queue a marginal candidate; returns the verdict to record (retest, or reverted)."""
        if decision.verdict != RETEST:
            return decision
        why = decision.reason.removeprefix("marginal: ")
        if attempt >= self.limit:
            s = "s" if attempt != 1 else ""
            return Decision(REVERTED, f"still marginal after {attempt} retest{s}: {why}",
                            decision.details)
        if winner is not None:
            return Decision(REVERTED, f"marginal, and #{winner} did better in this wave: {why}",
                            decision.details)
        if len(self.waiting) >= self.size:
            return Decision(REVERTED, f"marginal; the retest queue is full: {why}",
                            decision.details)
        self.waiting.append(Retest(exp_id, mutation, parent, attempt))
        return Decision(RETEST, f"{decision.reason}; will retest", decision.details)

    def next(self, best_id: int | None = None, *,
             alive: Callable[[int], bool] | None = None) -> tuple[Retest | None, list[Retest]]:
        """The next retest against this best version (or any parent still `alive`, in tree
        search), and the ones dropped because their parent changed since they were queued."""
        stale: list[Retest] = []
        alive = alive or (lambda parent: parent == best_id)
        while self.waiting:
            entry = self.waiting.popleft()
            if alive(entry.parent):
                return entry, stale
            stale.append(entry)
        return None, stale


def reeval_due(every: int, candidates_since: int) -> bool:
    """Re-evaluate the best once it has stood `every` candidates (since it won or was last
    re-evaluated), so a lucky best does not stand forever."""
    return every > 0 and candidates_since >= every
