"""Keep/revert policies: when is a candidate truly better than the best version?

Scores are noisy (an LLM judge flips, a benchmark jitters, a seed moves val_bpb), and the naive
rule keeps noise. Three rules, chosen by `decide.rule` in the spec:

- `greater`: the original autoresearch rule: a strictly better aggregate score keeps, ties revert.
- `margin`: keep only when the gain exceeds max(min_delta, z × the standard error of the
  difference); the noise comes from the baseline evaluated several times when the run starts
  (the noise floor), pooled with every repeated evaluation since. `z` is the strictness for a
  known noise; while the sd is estimated from few evaluations the multiplier widens to the
  Student-t value with the same tail (the reason shows the multiplier used).
- `paired`: compare candidate and best answer by answer (item × input × sample): an exact sign
  test (McNemar on the discordant pairs) for single yes/no answers, Wilcoxon's signed-rank test
  for graded ones (pass rates over equal repeats), a Cochran–Mantel–Haenszel test when the
  repeats differ; keep only when p < alpha.

Around every rule: `repeats` evaluations aggregated by mean or median; an early stop of the
repeats once a candidate is clearly worse, or clearly short of the bar it must clear
(`keep_going`, a sequential test consulted between repeats);
confirmation of a would-be winner with as many repeats again (`confirm`); a `retest` verdict
for marginal candidates (queued by engine/noise.py); and re-evaluation of the incumbent
(`reevaluate`). Every Decision carries a reason for the changelog and details (gain, se, p,
repeats, scores) for the store. The math is in engine/stats.py.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine import spec as specs
from engine import stats
from engine.model import KEPT, REEVALUATED, RETEST, REVERTED, Decision, Evaluation
from engine.noise import NoiseFloor, item_sd, ok_evaluations, scores

#: Baseline evaluations that measure the noise floor when `noise_repeats` is not set, for
#: the noise-aware rules; `greater` evaluates the baseline once, as autoresearch did.
AUTO_NOISE_REPEATS = 3
#: Marginal, hence retested: margin: gain above this fraction of the threshold; paired: p
#: below alpha times PAIRED_RETEST_FACTOR.
MARGIN_RETEST_FRACTION = 0.5
PAIRED_RETEST_FACTOR = 4
#: A re-evaluated best keeps at most this many times `baseline_repeats` evaluations.
INCUMBENT_MAX = 4


def aggregate(evals: Sequence[Evaluation], how: str = "mean") -> float | None:
    values = scores(evals)
    if not values:
        return None
    return statistics.median(values) if how == "median" else statistics.fmean(values)


def improvement(candidate: float, best: float, direction: str) -> float:
    """Gain of candidate over best, positive when better whatever the direction."""
    return candidate - best if direction == "maximize" else best - candidate


def _g(value: float) -> str:
    return f"{value:.3g}"


def _signed(value: float) -> str:
    return f"{value:+.3g}"


def _times(n: int) -> str:
    return f"{n} repeat{'s' if n != 1 else ''}"


@dataclass
class Evidence:
    """What a comparison of candidate and best found; becomes a Decision's details."""

    gain: float
    delta: float
    repeats: int
    best_repeats: int
    se: float | None = None
    sd: float | None = None  # of one evaluation's score
    df: int | None = None  # None: the sd is known (binomial) rather than estimated
    p: float | None = None  # one-sided: the candidate is no better
    p_worse: float | None = None  # one-sided: the candidate is no worse
    test: str = "z"
    wins: int = 0
    losses: int = 0
    pairs: int = 0

    def details(self, rule: str, candidate: Sequence[Evaluation]) -> dict[str, Any]:
        out = {"rule": rule, "gain": self.gain, "delta": self.delta, "se": self.se, "p": self.p,
               "repeats": self.repeats, "best_repeats": self.best_repeats, "test": self.test,
               "scores": scores(candidate)}
        if self.df is not None:
            out["df"] = self.df
        if self.pairs:
            out.update(pairs=self.pairs, wins=self.wins, losses=self.losses)
        return out


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
        auto = 1 if self.rule == "greater" else AUTO_NOISE_REPEATS
        return max(self.repeats, auto if wanted is None else wanted)

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
        return self.noise is not None and self.noise.learn(scores(ok_evaluations(evals)))

    # ------------------------------------------------------------ the protocol

    def keep_going(self, evals: Sequence[Evaluation], best: Sequence[Evaluation],
                   direction: str) -> bool:
        """Between repeats: evaluate the candidate once more? No when it failed, when it is
        clearly worse already (a sequential test), or when its repeats (and, for a would-be
        winner under `confirm`, its confirmation) are done."""
        cand, inc = ok_evaluations(evals), ok_evaluations(best)
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
        cand, inc = ok_evaluations(candidate), ok_evaluations(best)
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
            decision.details["incumbent_scores"] = scores(self.incumbent(cand))
        return decision

    def reevaluated(self, old: Sequence[Evaluation], new: Sequence[Evaluation]) -> list[Evaluation]:
        """The best's evaluations after a re-evaluation. Under `confirm` they were fresh (not
        chosen for winning), so the new ones add to them (the newest INCUMBENT_MAX baseline
        counts); otherwise the fresh ones replace the lucky ones."""
        if not self.config.confirm:
            return ok_evaluations(new)
        return (ok_evaluations(old) + ok_evaluations(new))[-INCUMBENT_MAX * self.baseline_repeats:]

    def incumbent(self, evals: Sequence[Evaluation]) -> list[Evaluation]:
        """The evaluations a newly kept version carries as the best. After a confirmation,
        only the confirming ones: the first ones won a selection, so they flatter it."""
        ok = ok_evaluations(evals)
        return ok[self.repeats:] if len(ok) > self.repeats else ok

    def reevaluate(self, old: Sequence[Evaluation], new: Sequence[Evaluation],
                   direction: str) -> Decision:
        """The best version evaluated afresh: its fresh score replaces a possibly lucky one."""
        how = self.config.aggregate
        before, after = aggregate(old, how), aggregate(new, how)
        if after is None or before is None:
            return Decision(REEVALUATED, "re-evaluation gave no score", {})
        ev = self._evidence(ok_evaluations(new), ok_evaluations(old), direction)
        luck = ""
        if ev.se and ev.gain < -stats.t_multiplier(self.config.z, ev.df) * ev.se:
            luck = "; its earlier score looks lucky"
        kept = self.reevaluated(old, new)
        now = "" if len(kept) == len(ok_evaluations(new)) else \
            f"; best now {_g(aggregate(kept, how) or 0)} over {len(kept)}"
        reason = (f"re-evaluated: {_g(before)} ({_times(len(ok_evaluations(old)))}) → "
                  f"{_g(after)} ({_times(len(ok_evaluations(new)))}){now}{luck}")
        details = ev.details(self.rule, new) | {"previous": before, "incumbent_scores": scores(kept)}
        return Decision(REEVALUATED, reason, details)

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

    def _bar(self, se: float | None, df: int | None) -> float:
        """The gain a candidate must beat to be kept: greater keeps anything strictly better."""
        return 0.0

    def _worse(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> str:
        """Why the candidate's repeats can stop now (empty when they go on): a sequential test.
        It is clearly worse than the best, or clearly short of the bar it must beat after all
        its repeats: even the optimistic end of its interval (gain + k×se) stays under it."""
        ev = self._evidence(cand, inc, direction)
        if not ev.se or ev.sd is None:
            return ""
        k = stats.t_multiplier(self.config.z, ev.df)
        if ev.gain < -k * ev.se:
            return f"clearly worse: gain {_signed(ev.gain)} < -{k:.2g}×se {_g(ev.se)}"
        final = self.repeats if len(cand) < self.repeats else self.max_repeats
        how = self.config.aggregate
        bar = self._bar(math.hypot(stats.se_of(ev.sd, final, how),
                                   stats.se_of(ev.sd, len(inc), how)), ev.df)
        if ev.gain + k * ev.se < bar:
            return (f"clearly short: gain {_signed(ev.gain)} + {k:.2g}×se {_g(ev.se)} stays "
                    f"under the {_g(bar)} needed after {_times(final)}")
        return ""

    # ------------------------------------------------------------ evidence

    def _evidence(self, cand: list[Evaluation], inc: list[Evaluation],
                  direction: str) -> Evidence:
        how = self.config.aggregate
        c, b = aggregate(cand, how), aggregate(inc, how)
        assert c is not None and b is not None
        ev = Evidence(improvement(c, b, direction), c - b, len(cand), len(inc))
        ev.sd, ev.df = self._sd(cand, inc)
        if ev.sd is not None:
            ev.se = math.hypot(stats.se_of(ev.sd, len(cand), how), stats.se_of(ev.sd, len(inc), how))
        ev.test = "t" if ev.df else "z"
        if ev.se:
            ev.p = stats.t_sf(ev.gain / ev.se, ev.df) if ev.df else stats.normal_sf(ev.gain / ev.se)
            ev.p_worse = 1 - ev.p
        return ev

    def _sd(self, cand: list[Evaluation], inc: list[Evaluation]) -> tuple[float | None, int | None]:
        """The sd of one evaluation's score, and its degrees of freedom (None: known).

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
            sd, known_df = item_sd(cand + inc), None
        return sd, known_df


class MarginPolicy(GreaterPolicy):
    """Keep only when the gain exceeds max(min_delta, z × se of the difference)."""

    rule = "margin"

    def _bar(self, se: float | None, df: int | None) -> float:
        noise = stats.t_multiplier(self.config.z, df) * se if se else 0.0
        return max(self.config.min_delta, noise)

    def _test(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> Decision:
        cfg = self.config
        ev = self._evidence(cand, inc, direction)
        details = ev.details(self.rule, cand)
        k = stats.t_multiplier(cfg.z, ev.df)
        noise = k * ev.se if ev.se else 0.0
        threshold = self._bar(ev.se, ev.df)
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
        elif all(len(cand_answers[k]) == len(best_answers[k]) for k in keys):
            # Equal repeats: each answer's difference of pass rates is symmetric under the null.
            ev.test = "Wilcoxon"
            ev.p, ev.p_worse = stats.wilcoxon(diffs), stats.wilcoxon(-d for d in diffs)
        else:
            # Unequal repeats (the best has its noise-floor evaluations): Wilcoxon's symmetry
            # fails, so each answer is a stratum of a Cochran–Mantel–Haenszel test.
            ev.test = "CMH"
            flip = direction != "maximize"
            strata = [(int(sum(cand_answers[k])), len(cand_answers[k]),
                       int(sum(best_answers[k])), len(best_answers[k])) for k in keys]
            swapped = [(pb, nb, pa, na) for pa, na, pb, nb in strata]
            ev.p, ev.p_worse = stats.cmh(swapped if flip else strata), stats.cmh(
                strata if flip else swapped)
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

    def _bar(self, se: float | None, df: int | None) -> float:
        # Without answers to pair, a one-sided t-test at `alpha`: its bar in units of se.
        if not se:
            return self.config.min_delta
        k = stats.t_multiplier(_z_of(self.config.alpha), df)
        return max(self.config.min_delta, k * se)

    def _worse(self, cand: list[Evaluation], inc: list[Evaluation], direction: str) -> str:
        ev = self._evidence(cand, inc, direction)
        if not ev.pairs:
            return super()._worse(cand, inc, direction)
        if ev.p_worse is not None and ev.p_worse < self.config.alpha:
            return (f"clearly worse: {ev.losses} worse, {ev.wins} better of {ev.pairs} answers, "
                    f"{ev.test} p {ev.p_worse:.2g}")
        return ""


def _z_of(alpha: float) -> float:
    """The normal quantile with upper tail alpha (bisection: a few lines, no scipy)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stats.normal_sf(mid) > alpha else (lo, mid)
    return hi


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
