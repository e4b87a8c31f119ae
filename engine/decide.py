"""Keep/revert policies. `greater` is the original autoresearch rule: strictly better keeps,
ties revert. Noise-aware rules (margin, paired) build on the same interface."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from engine import spec as specs
from engine.model import KEPT, REVERTED, Decision, Evaluation


def aggregate(evals: Sequence[Evaluation], how: str = "mean") -> float | None:
    scores = [e.score for e in evals if e.score is not None]
    if not scores:
        return None
    return statistics.median(scores) if how == "median" else statistics.fmean(scores)


def improvement(candidate: float, best: float, direction: str) -> float:
    """Gain of candidate over best, positive when better whatever the direction."""
    return candidate - best if direction == "maximize" else best - candidate


class GreaterPolicy:
    """Keep when the candidate's aggregate score is strictly better than the best's."""

    def __init__(self, config: specs.Decide) -> None:
        self.config = config

    @property
    def repeats(self) -> int:
        return self.config.repeats

    def decide(self, candidate: Sequence[Evaluation], best: Sequence[Evaluation],
               direction: str) -> Decision:
        cand, inc = aggregate(candidate, self.config.aggregate), aggregate(best, self.config.aggregate)
        if cand is None:
            return Decision(REVERTED, "no score")
        if inc is None:
            return Decision(KEPT, "no incumbent score")
        gain = improvement(cand, inc, direction)
        if gain > 0:
            return Decision(KEPT, f"better by {abs(cand - inc):.4g}", {"gain": gain})
        return Decision(REVERTED, "tie" if gain == 0 else f"worse by {abs(cand - inc):.4g}",
                        {"gain": gain})


def build_policy(config: specs.Decide) -> GreaterPolicy:
    return GreaterPolicy(config)
