"""The `greater` rule, and what every keep/revert rule builds on: the aggregate score, the
gain toward better, the Evidence of a comparison, repeats, early stops, confirmation and the
re-evaluation of the incumbent (engine/decide.py describes the rules; engine/noisyrules.py
holds the noise-aware ones)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine import spec as specs
from engine import stats
from engine.model import KEPT, REEVALUATED, REVERTED, Decision, Evaluation
from engine.noise import NoiseFloor, item_sd, ok_evaluations, scores

#: Baseline evaluations that measure the noise floor when `noise_repeats` is not set, for
#: the noise-aware rules; `greater` evaluates the baseline once, as autoresearch did.
AUTO_NOISE_REPEATS = 3
#: A re-evaluated best keeps at most this many times `baseline_repeats` evaluations.
INCUMBENT_MAX = 4


def aggregate(evals: Sequence[Evaluation], how: str = "mean") -> float | None:
    values = scores(evals)
    if not values:
        return None
    # (fmean's own arithmetic, without its checks: called a few times a round)
    return statistics.median(values) if how == "median" else math.fsum(values) / len(values)


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

