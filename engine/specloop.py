"""The spec's `decide:`, `stop:` and `search:` sections: how the loop keeps or reverts a
candidate, when it stops, and which versions it proposes from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.specbase import Strict


class Decide(Strict):
    rule: Literal["greater", "margin", "paired"] = "greater"
    repeats: int = Field(default=1, ge=1)
    aggregate: Literal["mean", "median"] = "mean"
    min_delta: float = Field(default=0.0, ge=0)
    z: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    #: Baseline evaluations used to measure the noise floor when the run starts
    #: (default: the larger of `repeats` and 3).
    noise_repeats: int | None = Field(default=None, ge=1)
    #: Re-evaluate a would-be winner before keeping it.
    confirm: bool = False
    #: Re-evaluate the incumbent every K rounds (0: never).
    reeval_every: int = Field(default=0, ge=0)
    #: Stop a candidate's repeats early once it is clearly worse than the best, or clearly
    #: short of the bar it must clear (a sequential test; saves evaluations).
    early_stop: bool = True
    #: Re-run a marginal candidate (margin, paired) up to this many times (0: never).
    retest: int = Field(default=1, ge=0)


class Stop(Strict):
    #: Stop once the score reaches `target` this many times in a row (default 0.95 for
    #: checklists and test suites; none for metrics).
    target: float | None = None
    streak: int = Field(default=3, ge=1)
    max_rounds: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    #: Stop after this many rounds without a keep.
    plateau: int | None = Field(default=None, ge=1)
    max_failures: int | None = Field(default=5, ge=1)
    #: Stop when the held-out score falls while the optimized one rises (overfitting), and
    #: name the version before the divergence as the one to ship.
    overfit: bool = False


class Search(Strict):
    """Which versions candidates are proposed from (engine/search.py)."""

    #: greedy: every candidate from the best version; beam: from the `width` best versions
    #: in turn; frontier: from the frontier, drawn by `pick`.
    strategy: Literal["greedy", "beam", "frontier"] = "greedy"
    #: Versions kept alive as parents (greedy keeps one).
    width: int = Field(default=4, ge=1, le=64)
    #: How frontier search draws a parent: the best, softmax over scores, or the best with
    #: probability 1 - epsilon and any member otherwise.
    pick: Literal["best", "softmax", "epsilon"] = "softmax"
    epsilon: float = Field(default=0.2, ge=0, le=1)
    #: Softmax temperature, as a fraction of the frontier's score range.
    temperature: float = Field(default=0.3, gt=0)
    #: Softmax: a member's weight halves with every `patience` children it has had (a
    #: version whose children keep failing hands the draws to the others).
    patience: float = Field(default=2.0, gt=0)
    seed: int | None = None
