"""The noise-aware keep/revert rules: `margin` (the gain must clear z × its standard error)
and `paired` (answer-by-answer tests: sign, Wilcoxon, Cochran–Mantel–Haenszel). Both build on
engine/greater.py's GreaterPolicy; engine/decide.py describes the rules."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from engine import stats
from engine.greater import Evidence, GreaterPolicy, _g, _signed, _times
from engine.model import KEPT, RETEST, REVERTED, Decision, Evaluation

#: Marginal, hence retested: margin: gain above this fraction of the threshold; paired: p
#: below alpha times PAIRED_RETEST_FACTOR.
MARGIN_RETEST_FRACTION = 0.5
PAIRED_RETEST_FACTOR = 4


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
