"""Keep/revert policies: when is a candidate truly better than the best version?

Scores are noisy (an LLM judge flips, a benchmark jitters, a seed moves val_bpb), and the naive
rule keeps noise. Three rules, chosen by `decide.rule` in the spec:

- `greater`: the original autoresearch rule: a strictly better aggregate score keeps, ties revert.
- `margin`: keep only when the gain exceeds max(min_delta, z × the standard error of the
  difference); the noise comes from the baseline evaluated several times when the run starts
  (the noise floor), pooled with the repeats of the candidate and the best.
- `paired`: compare candidate and best answer by answer (item × input × sample): an exact sign
  test (McNemar on the discordant pairs) for single yes/no answers, Wilcoxon's signed-rank test
  for graded ones (answers averaged over repeats); keep only when p < alpha.

Around every rule: `repeats` evaluations aggregated by mean or median; an early stop of the
repeats when a candidate is clearly worse (`keep_going`, consulted between repeats);
confirmation of a would-be winner with as many repeats again (`confirm`); a `retest` verdict
for marginal candidates (`RetestQueue`); and re-evaluation of the incumbent (`reevaluate`).
Every Decision carries a reason for the changelog and details (gain, se, p, repeats) for the store.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import spec as specs
from engine import stats
from engine.model import KEPT, REEVALUATED, RETEST, REVERTED, Decision, Evaluation, Mutation

#: Baseline evaluations that measure the noise floor when `noise_repeats` is not set.
AUTO_NOISE_REPEATS = 3
#: Marginal, hence retested: margin: gain above this fraction of the threshold; paired: p
#: below alpha times PAIRED_RETEST_FACTOR.
MARGIN_RETEST_FRACTION = 0.5
PAIRED_RETEST_FACTOR = 4
#: Marginal candidates waiting for a retest, at most.
RETEST_QUEUE = 8


def scores(evals: Sequence[Evaluation]) -> list[float]:
    return [e.score for e in evals if e.score is not None]


def aggregate(evals: Sequence[Evaluation], how: str = "mean") -> float | None:
    values = scores(evals)
    if not values:
        return None
    return statistics.median(values) if how == "median" else statistics.fmean(values)


def improvement(candidate: float, best: float, direction: str) -> float:
    """Gain of candidate over best, positive when better whatever the direction."""
    return candidate - best if direction == "maximize" else best - candidate


def _ok(evals: Sequence[Evaluation]) -> list[Evaluation]:
    return [e for e in evals if e.status == "ok" and e.score is not None]


def _g(value: float) -> str:
    return f"{value:.3g}"


def _signed(value: float) -> str:
    return f"{value:+.3g}"


def _times(n: int) -> str:
    return f"{n} repeat{'s' if n != 1 else ''}"


def _item_sd(evals: Sequence[Evaluation]) -> float | None:
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
        values = scores(_ok(evals))
        mean, sd = stats.mean_sd(values) if values else (None, None)
        floor = cls(len(values), mean, sd, values, how, _item_sd(_ok(evals)[:1]))
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


@dataclass
class Evidence:
    """What a comparison of candidate and best found; becomes a Decision's details."""

    gain: float
    delta: float
    repeats: int
    best_repeats: int
    se: float | None = None
    df: int | None = None  # None: the sd is known (binomial) rather than estimated
    p: float | None = None  # one-sided: the candidate is no better
    p_worse: float | None = None  # one-sided: the candidate is no worse
    test: str = "z"
    wins: int = 0
    losses: int = 0
    pairs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def details(self, rule: str, candidate: Sequence[Evaluation]) -> dict[str, Any]:
        out = {"rule": rule, "gain": self.gain, "delta": self.delta, "se": self.se, "p": self.p,
               "repeats": self.repeats, "best_repeats": self.best_repeats, "test": self.test,
               "scores": scores(candidate)}
        if self.df is not None:
            out["df"] = self.df
        if self.pairs:
            out.update(pairs=self.pairs, wins=self.wins, losses=self.losses)
        return {**out, **self.extra}


class GreaterPolicy:
    """Keep when the candidate's aggregate score is strictly better than the best's."""

    rule = "greater"

    def __init__(self, config: specs.Decide) -> None:
        self.config = config
        #: Measured from the baseline when the run starts (or restored on resume).
        self.noise: NoiseFloor | None = None

    # ------------------------------------------------------------ budget

    @property
    def repeats(self) -> int:
        return self.config.repeats

    @property
    def baseline_repeats(self) -> int:
        """Evaluations of the baseline (and of each re-evaluation of the best)."""
        wanted = self.config.noise_repeats
        return max(self.repeats, AUTO_NOISE_REPEATS if wanted is None else wanted)

    @property
    def max_repeats(self) -> int:
        """The most evaluations one candidate can take: its repeats, then as many to confirm."""
        return 2 * self.repeats if self.config.confirm else self.repeats

    def measure_noise(self, evals: Sequence[Evaluation]) -> NoiseFloor:
        self.noise = NoiseFloor.measure(evals, self.config.aggregate)
        return self.noise

    def restore_noise(self, text: str | None) -> None:
        self.noise = NoiseFloor.from_json(text)

    def learn(self, evals: Sequence[Evaluation]) -> bool:
        """Refine the noise estimate with one version's repeated evaluations, once they are
        decided (True when it changed: the caller stores `noise.to_json()`)."""
        return self.noise is not None and self.noise.learn(scores(_ok(evals)))

    # ------------------------------------------------------------ the protocol

    def keep_going(self, evals: Sequence[Evaluation], best: Sequence[Evaluation],
                   direction: str) -> bool:
        """Between repeats: evaluate the candidate once more? No when it failed, when it is
        clearly worse already (a sequential test), or when its repeats (and, for a would-be
        winner under `confirm`, its confirmation) are done."""
        cand, inc = _ok(evals), _ok(best)
        if not cand or len(cand) < len(evals):
            return False
        n = len(cand)
        if not inc:
            return n < self.repeats
        if n >= self.max_repeats:
            return False
        if n == self.repeats:  # only a would-be winner gets here under `confirm`
            return self._test(cand, inc, direction).verdict == KEPT
        return not (self.config.early_stop and self._worse(cand, inc, direction))

    def decide(self, candidate: Sequence[Evaluation], best: Sequence[Evaluation],
               direction: str) -> Decision:
        cand, inc = _ok(candidate), _ok(best)
        if not cand:
            return Decision(REVERTED, "no score")
        if not inc:
            return Decision(KEPT, "no incumbent score")
        n = len(cand)
        if n < self.repeats and self.config.early_stop:
            why = self._worse(cand, inc, direction)
            if why:
                ev = self._evidence(cand, inc, direction)
                details = ev.details(self.rule, cand) | {"early_stop": True}
                return Decision(REVERTED, f"stopped after {n} of {self.repeats} repeats: {why}",
                                details)
        decision = self._test(cand, inc, direction)
        if n > self.repeats:
            confirmed = decision.verdict == KEPT
            decision.reason = ("confirmed: " if confirmed else "not confirmed: ") + decision.reason
            decision.details["confirmed"] = confirmed
        return decision

    def reevaluate(self, old: Sequence[Evaluation], new: Sequence[Evaluation],
                   direction: str) -> Decision:
        """The best version evaluated afresh: its fresh score replaces a possibly lucky one."""
        how = self.config.aggregate
        before, after = aggregate(old, how), aggregate(new, how)
        if after is None or before is None:
            return Decision(REEVALUATED, "re-evaluation gave no score", {})
        ev = self._evidence(_ok(new), _ok(old), direction)
        luck = ""
        if ev.se and ev.gain < -stats.t_multiplier(self.config.z, ev.df) * ev.se:
            luck = "; its earlier score looks lucky"
        reason = (f"re-evaluated: {_g(before)} ({_times(len(_ok(old)))}) → {_g(after)} "
                  f"({_times(len(_ok(new)))}){luck}")
        return Decision(REEVALUATED, reason, ev.details(self.rule, new) | {"previous": before})

    # ------------------------------------------------------------ rule hooks

    def _test(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> Decision:
        ev = self._evidence(cand, inc, direction)
        details = ev.details(self.rule, cand)
        noise = f", se {_g(ev.se)}" if ev.se else ""
        where = f" ({_times(ev.repeats)}{noise})" if ev.repeats > 1 or noise else ""
        if ev.gain > 0:
            return Decision(KEPT, f"better by {_g(abs(ev.delta))}{where}", details)
        worse = "tie" if ev.gain == 0 else f"worse by {_g(abs(ev.delta))}"
        return Decision(REVERTED, worse + where, details)

    def _worse(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> str:
        """Why the candidate is clearly worse than the best (empty when it is not)."""
        ev = self._evidence(cand, inc, direction)
        if not ev.se:
            return ""
        k = stats.t_multiplier(self.config.z, ev.df)
        if ev.gain < -k * ev.se:
            return f"clearly worse: gain {_signed(ev.gain)} < -{k:.2g}×se {_g(ev.se)}"
        return ""

    # ------------------------------------------------------------ evidence

    def _evidence(self, cand: list[Evaluation], inc: list[Evaluation],
                  direction: str) -> Evidence:
        how = self.config.aggregate
        c, b = aggregate(cand, how), aggregate(inc, how)
        assert c is not None and b is not None
        ev = Evidence(improvement(c, b, direction), c - b, len(cand), len(inc))
        ev.se, ev.df = self._se(cand, inc)
        ev.test = "t" if ev.df else "z"
        if ev.se:
            ev.p = stats.t_sf(ev.gain / ev.se, ev.df) if ev.df else stats.normal_sf(ev.gain / ev.se)
            ev.p_worse = 1 - ev.p
        return ev

    def _se(self, cand: list[Evaluation], inc: list[Evaluation]) -> tuple[float | None, int | None]:
        """Standard error of the difference of aggregates, and the sd's degrees of freedom.

        The sd is pooled over the noise estimate (which already holds the best's repeats) and
        the candidate's repeats; without any repeats, a pass rate's binomial sd stands in.
        """
        groups = [scores(cand)] if self.noise else [scores(cand), scores(inc)]
        ss, df = (self.noise.ss, self.noise.df) if self.noise else (0.0, 0)
        for group in groups:
            if len(group) >= 2:
                mean = math.fsum(group) / len(group)
                ss += math.fsum((v - mean) ** 2 for v in group)
                df += len(group) - 1
        sd = math.sqrt(ss / df) if df else None
        known_df: int | None = df
        if sd is None:
            sd, known_df = _item_sd(cand + inc), None
        if sd is None:
            return None, None
        how = self.config.aggregate
        se = math.hypot(stats.se_of(sd, len(cand), how), stats.se_of(sd, len(inc), how))
        return se, known_df


class MarginPolicy(GreaterPolicy):
    """Keep only when the gain exceeds max(min_delta, z × se of the difference)."""

    rule = "margin"

    def _test(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> Decision:
        cfg = self.config
        ev = self._evidence(cand, inc, direction)
        details = ev.details(self.rule, cand)
        k = stats.t_multiplier(cfg.z, ev.df)
        noise = k * ev.se if ev.se else 0.0
        threshold = max(cfg.min_delta, noise)
        details["threshold"] = threshold
        if noise >= cfg.min_delta:
            bar = f"{k:.2g}×se {_g(ev.se)}" if ev.se else "0 (no noise estimate)"
        else:
            bar = f"min_delta {_g(cfg.min_delta)}"
        tail = f" ({_times(ev.repeats)}" + (f", p {ev.p:.2g})" if ev.p is not None else ")")
        gain = f"gain {_signed(ev.gain)}"
        if ev.gain > threshold:
            return Decision(KEPT, f"{gain} > {bar}{tail}", details)
        if cfg.retest and threshold > 0 and ev.gain > MARGIN_RETEST_FRACTION * threshold:
            return Decision(RETEST, f"marginal: {gain} ≤ {bar}{tail}", details)
        return Decision(REVERTED, f"{gain} ≤ {bar}{tail}", details)


class PairedPolicy(MarginPolicy):
    """Compare answer by answer; keep when a one-sided paired test gives p < alpha."""

    rule = "paired"

    def _evidence(self, cand: list[Evaluation], inc: list[Evaluation],
                  direction: str) -> Evidence:
        ev = super()._evidence(cand, inc, direction)
        cand_answers, best_answers = _answers(cand), _answers(inc)
        keys = [k for k in cand_answers if k in best_answers]
        if not keys:  # a metric: nothing to pair, so the z/t test on the scores decides
            return ev
        sign = 1.0 if direction == "maximize" else -1.0
        diffs = [sign * (statistics.fmean(cand_answers[k]) - statistics.fmean(best_answers[k]))
                 for k in keys]
        ev.pairs = len(diffs)
        ev.wins = sum(d > 0 for d in diffs)
        ev.losses = sum(d < 0 for d in diffs)
        if all(len(cand_answers[k]) == 1 and len(best_answers[k]) == 1 for k in keys):
            ev.test = "sign test"
            ev.p, ev.p_worse = stats.sign_test(ev.wins, ev.losses), stats.sign_test(ev.losses, ev.wins)
        else:
            ev.test = "Wilcoxon"
            ev.p, ev.p_worse = stats.wilcoxon(diffs), stats.wilcoxon(-d for d in diffs)
        return ev

    def _test(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> Decision:
        cfg = self.config
        ev = self._evidence(cand, inc, direction)
        details = ev.details(self.rule, cand)
        if ev.p is None:  # no noise estimate at all: only the sign of the gain is left
            return super()._test(cand, inc, direction)
        what = (f"{ev.wins} better, {ev.losses} worse of {ev.pairs} answers, {ev.test}"
                if ev.pairs else f"no answers to pair; t-test gain {_signed(ev.gain)} se {_g(ev.se or 0)}")
        tail = f" ({_times(ev.repeats)})"
        small = f" but gain {_signed(ev.gain)} ≤ min_delta {_g(cfg.min_delta)}" \
            if ev.gain <= cfg.min_delta else ""
        if ev.p < cfg.alpha and not small:
            return Decision(KEPT, f"{what} p {ev.p:.2g} < {cfg.alpha:g}{tail}", details)
        if cfg.retest and not small and ev.p < min(0.5, PAIRED_RETEST_FACTOR * cfg.alpha):
            return Decision(RETEST, f"marginal: {what} p {ev.p:.2g} ≥ {cfg.alpha:g}{tail}", details)
        return Decision(REVERTED, f"{what} p {ev.p:.2g}{small}{tail}", details)

    def _worse(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> str:
        ev = self._evidence(cand, inc, direction)
        if not ev.pairs:
            return super()._worse(cand, inc, direction)
        if ev.p_worse is not None and ev.p_worse < self.config.alpha:
            return (f"clearly worse: {ev.losses} worse, {ev.wins} better of {ev.pairs} answers, "
                    f"{ev.test} p {ev.p_worse:.2g}")
        return ""


def _answers(evals: Sequence[Evaluation]) -> dict[tuple[str, str, int], list[float]]:
    """Yes/no answers keyed by item × input × sample, over repeats; no answer counts as no."""
    table: dict[tuple[str, str, int], list[float]] = {}
    for e in evals:
        for r in e.items:
            table.setdefault((r.item, r.input, r.sample), []).append(1.0 if r.passed else 0.0)
    return table


POLICIES: dict[str, type[GreaterPolicy]] = {
    "greater": GreaterPolicy, "margin": MarginPolicy, "paired": PairedPolicy}


def build_policy(config: specs.Decide) -> GreaterPolicy:
    return POLICIES[config.rule](config)


def restore_evaluations(score: float | None, decision_json: str | None,
                        items: list[Any]) -> list[Evaluation]:
    """The best version's evaluations rebuilt from the store after a resume: every repeat's
    score (kept in the decision details), the item results on the first."""
    details = json.loads(decision_json) if decision_json else {}
    values = [v for v in details.get("scores") or [] if isinstance(v, int | float)]
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

    def next(self, best_id: int | None) -> tuple[Retest | None, list[Retest]]:
        """The next retest against this best version, and the ones dropped because the best
        version changed since they were queued."""
        stale: list[Retest] = []
        while self.waiting:
            entry = self.waiting.popleft()
            if entry.parent == best_id:
                return entry, stale
            stale.append(entry)
        return None, stale


def reeval_due(every: int, candidates_since: int) -> bool:
    """Re-evaluate the best once it has stood `every` candidates (since it won or was last
    re-evaluated), so a lucky best does not stand forever."""
    return every > 0 and candidates_since >= every
