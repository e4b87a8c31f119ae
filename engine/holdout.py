"""Held-out scoring: the run sees its own overfitting.

A spec can hold part of its measurement out of the climb: checklist inputs (`holdout:` a list,
or `{fraction, seed}` of `inputs`), test cases whose names match a pattern (tests specs'
`holdout:`), or a `holdout_command` (metric specs). What is held out is never in the evaluator
that decides keeps, so neither it nor its outputs reach the mutator's prompt or a playbook
(the `inputs` the prompt names are the optimized ones only).

The best version is scored on the held-out part at the baseline, after every `holdout_every`
keeps, and at the end, each time as an experiment of kind `holdout` (parent: the version
scored; `score` stays empty so no stop rule, chart or decision reads it as a climb; the
held-out score is in its metrics and its description). When the optimized score has risen
since a checkpoint while the held-out score fell beyond its noise (the run's `decide.z`,
the held-out evaluations' own spread or their binomial spread), the run raises an alert;
with `stop.overfit: true` it stops and names the version before the divergence.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from engine import spec as specs
from engine.checkpoints import HOLDOUT, Point, point_of
from engine.context import RunContext, usage_of
from engine.decide import GreaterPolicy, aggregate, improvement
from engine.model import INTERRUPTED, Evaluation, Evaluator
from engine.noise import NoiseFloor
from engine.scoring import Scorer
from engine.stats import normal_sf
from engine.versions import Versions
from engine.workers.tiers import Tier

#: Checkpoints averaged on each side of a divergence (bench/holdout.py measured 1-3).
WINDOW = 3
#: The alert's false-alarm budget is spread over a run's checkpoints as if it were expected to
#: last about this many; after that each check's share falls off as 1/k² (bench/holdout.py).
HORIZON = 10


# ---------------------------------------------------------------- spec: what is held out


def holdout_evaluate(spec: specs.Spec) -> specs.Evaluate | None:
    """The spec's evaluation of the held-out part only, or None when nothing is held out."""
    ev = spec.evaluate
    if isinstance(ev, specs.ChecklistEval) and ev.holdout:
        return ev.model_copy(update={"inputs": list(ev.holdout), "holdout": None})
    if isinstance(ev, specs.MetricEval) and ev.holdout_command:
        return ev.model_copy(update={"command": ev.holdout_command, "guard": None})
    if isinstance(ev, specs.TestsEval) and ev.holdout:
        return ev
    return None


def build_holdout_evaluator(spec: specs.Spec) -> Evaluator | None:
    ev = holdout_evaluate(spec)
    if ev is None:
        return None
    if isinstance(ev, specs.TestsEval):
        from engine.evaluators.tests import TestsEvaluator

        return TestsEvaluator(ev, held_out=True)
    from engine.evaluators import build_evaluator

    return build_evaluator(spec.model_copy(update={"evaluate": ev}))


# ---------------------------------------------------------------- divergence (pure)


@dataclass
class Divergence:
    since: Point  # the checkpoint before the divergence: the version to ship
    now: Point
    gain: float  # optimized, in the spec's direction
    loss: float  # held out, in the spec's direction (negative: worse)
    z: float

    def message(self, what: str) -> str:
        return (f"overfitting: {self.gain:+.2f} on the {what}, {_minus(self.loss)} held out "
                f"since #{self.since.version}")


def _minus(value: float) -> str:
    return f"{value:+.2f}".replace("-", "\u2212")


def divergence(points: list[Point], z: float, direction: str = "maximize",
               floor: float = 0.0, window: int = WINDOW) -> Divergence | None:
    """The optimized score rose since an earlier stretch of checkpoints while the held-out
    score fell by more than `z` standard errors of the difference (and more than `floor`).

    The latest `window` checkpoints' mean held-out score is compared with the best mean of
    `window` earlier ones (fewer while the run is young): a trend, not one noisy scoring.
    Every checkpoint is one more chance of a false alarm, so the k-th check spends only a
    share (h+1)/((k+h)(k+h+1)) of `z`'s tail, h = HORIZON: the shares telescope to exactly
    the whole over any run's length (a union bound: the run's false-alarm rate stays within
    `z`'s tail however long it runs), and they are spread over the checkpoints where a
    divergence can be seen rather than spent on the first, which compares one scoring with
    one (1/k², the earlier share, gave the first check 61% of the budget)."""
    if len(points) < 2:
        return None
    w = max(1, min(window, len(points) // 2))
    now = points[-w:]
    refs = [points[i:i + w] for i in range(len(points) - 2 * w + 1)]
    ref = max(refs, key=lambda r: (improvement(_mean(r), _mean(now), direction), r[-1].exp_id))
    gain = improvement(now[-1].optimized, ref[-1].optimized, direction)
    loss = improvement(_mean(now), _mean(ref), direction)
    if gain <= 0 or loss >= 0:
        return None
    se = math.sqrt(sum(p.se ** 2 for p in now) + sum(p.se ** 2 for p in ref)) / w
    bar = _z_for(z, 1 / spent_share(len(points) - w)) * se
    if -loss > max(bar, floor):
        return Divergence(ref[-1], now[-1], gain, loss, -loss / se if se else math.inf)
    return None


def spent_share(k: int, horizon: int = HORIZON) -> float:
    """The share of the false-alarm budget the k-th check (k ≥ 1) spends; the shares over
    k = 1, 2, … telescope to exactly 1."""
    return (horizon + 1) / ((k + horizon) * (k + horizon + 1))


def _mean(points: list[Point]) -> float:
    return sum(p.held_out for p in points) / len(points)


def _z_for(z: float, comparisons: float) -> float:
    """The one-sided z whose tail is `z`'s split over `comparisons` (by bisection)."""
    if comparisons <= 1:
        return z
    tail = normal_sf(z) / comparisons
    lo, hi = z, z + 6
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if normal_sf(mid) > tail else (lo, mid)
    return hi


def held_out_se(evals: list[Evaluation], floor_sd: float | None) -> float:
    """A held-out score's standard error: the spread of its repeats, the binomial spread of
    its answers (checklists, tests), or else the run's noise floor, whichever is largest."""
    ok = [e for e in evals if e.status == "ok" and e.score is not None]
    if not ok:
        return 0.0
    noise = NoiseFloor.measure(ok)
    sd = max(noise.sd or 0.0, _binomial_sd(ok), floor_sd or 0.0)
    return sd / math.sqrt(len(ok))


def _binomial_sd(evals: list[Evaluation]) -> float:
    """The pass rate's binomial sd over an evaluation's answers, with one pass and one fail
    added (Laplace): a perfect score out of 30 answers is not a certainty."""
    values = []
    for e in evals:
        n = len(e.items)
        if n and e.score is not None and 0 <= e.score <= 1:
            p = (e.score * n + 1) / (n + 2)
            values.append(p * (1 - p) / n)
    return math.sqrt(sum(values) / len(values)) if values else 0.0


# ---------------------------------------------------------------- the run's collaborator


class HeldOut:
    """Scores the best version on the held-out part when due; watches for divergence."""

    def __init__(self, ctx: RunContext, scorer: Scorer, versions: Versions,
                 policy: GreaterPolicy, full: Tier) -> None:
        self.ctx = ctx
        self.scorer = scorer
        self.versions = versions
        self.policy = policy
        evaluator = build_holdout_evaluator(ctx.spec)
        self.tier = None if evaluator is None else Tier(HOLDOUT, full.group, evaluator, full.env)
        self.points: list[Point] = []
        self.keeps = 0  # keeps of the best since the last checkpoint
        self.alerted: Divergence | None = None
        #: Set when `stop.overfit` stops the run.
        self.stop_reason: str | None = None
        ev = ctx.spec.evaluate
        self.what = ("checklist" if isinstance(ev, specs.ChecklistEval) else
                     "tests" if isinstance(ev, specs.TestsEval) else "metric")

    @property
    def enabled(self) -> bool:
        return self.tier is not None

    def resume(self) -> None:
        """Checkpoints from the store (a resumed run goes on watching the same series)."""
        self.points = []
        if not self.enabled:
            return
        for row in self.ctx.store.experiments_of_kind(self.ctx.run_id, HOLDOUT):
            point = point_of(row)
            if point is not None:
                self.points.append(point)

    def note_round(self, best_moved: bool) -> None:
        self.keeps += bool(best_moved)

    async def due(self) -> None:
        """After the baseline or a round: score the best if no checkpoint has yet, or after
        `holdout_every` keeps."""
        if not self.enabled or self.versions.best is None:
            return
        if not self.points:
            await self.score("at the baseline" if self.versions.best.parent is None
                             else "at the start")
        elif self.keeps >= self.ctx.spec.holdout_every:
            await self.score(f"after {self.keeps} keeps")

    async def final(self) -> None:
        """At the end of a run: score the best if it changed since the last checkpoint."""
        best, budget = self.versions.best, self.ctx.spec.stop.max_cost_usd
        if budget is not None and self.ctx.ledger.cost >= budget:
            self.ctx.log("no held-out scoring at the end: max_cost_usd is spent", level="warning")
            return
        if (self.enabled and best is not None and self.stop_reason is None
                and (not self.points or self.points[-1].version != best.exp_id)):
            await self.score("at the end")

    async def score(self, why: str) -> Point | None:
        ctx, best = self.ctx, self.versions.best
        assert best is not None and self.tier is not None
        self.keeps = 0
        how = ctx.spec.decide.aggregate
        optimized = aggregate(best.evals, how)
        exp_id = ctx.store.start_experiment(
            ctx.run_id, round=ctx.ledger.max_round, kind=HOLDOUT, parent=best.exp_id,
            description=f"held out: #{best.exp_id} {why}")
        ctx.log(f"scoring #{best.exp_id} on the held-out part ({why})", exp_id=exp_id)
        ctx.notify()
        try:
            evals, worker = await self.scorer.score(exp_id, dict(best.files),
                                                    self.policy.baseline_repeats, self.tier)
        except asyncio.CancelledError:
            ctx.store.finish_experiment(exp_id, verdict=INTERRUPTED,
                                        reason="stopped before the held-out scoring finished")
            raise
        usage = usage_of(evals)
        run_update = ctx.ledger.totals(usage)  # max_cost_usd counts held-out scoring
        ok = [e for e in evals if e.status == "ok" and e.score is not None]
        first = evals[0]
        held = aggregate(ok, how)
        if held is None or optimized is None:
            ctx.store.finish_experiment(
                exp_id, verdict=first.status if first.status != "ok" else "crashed",
                reason=first.error or "no held-out score", error=first.error,
                log_tail=first.log_tail, usage=usage, worker=worker, run_update=run_update)
            ctx.log(f"held-out scoring of #{best.exp_id} failed: {first.error}",
                    level="warning", exp_id=exp_id)
            return None
        floor = self.policy.noise.sd if self.policy.noise is not None else None
        point = Point(exp_id, best.exp_id, optimized, held, held_out_se(evals, floor))
        self.points.append(point)
        found = divergence(self.points, self.policy.config.z, ctx.spec.direction,
                           self.policy.config.min_delta)
        decision: dict[str, Any] = {"holdout_scores": [e.score for e in ok], "se": point.se}
        if found is not None:
            decision.update(overfit=True, since=found.since.version, ship=found.since.version,
                            gain=found.gain, loss=found.loss)
        ctx.store.finish_experiment(
            exp_id, verdict=HOLDOUT, reason=f"held out {held:.4g} · optimized {optimized:.4g}",
            metrics={"holdout_score": held, "optimized_score": optimized, "holdout_se": point.se},
            items=first.items, usage=usage, log_tail=first.log_tail, worker=worker,
            run_update=run_update, decision=decision)
        ctx.log(f"held out: #{best.exp_id} scores {held:.4g} (optimized {optimized:.4g})",
                exp_id=exp_id)
        if found is not None:
            self._diverged(found)
        ctx.notify()
        return point

    def _diverged(self, found: Divergence) -> None:
        ctx = self.ctx
        message = found.message(self.what)
        self.alerted = found
        ctx.alert = message
        ctx.log(message + f" (z {found.z:.1f}); the version to ship is #{found.since.version}",
                level="warning")
        if ctx.spec.stop.overfit:
            self.stop_reason = f"{message}; ship #{found.since.version}"
