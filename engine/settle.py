"""Settling a wave: each candidate's verdict against its parent, and its record.

    decide   vetoed in flight → vetoed; a failed evaluation → its status; a parent no longer
             alive → reverted; a failed guard → reverted; else the run's decision rule,
             candidate vs parent.
             greedy: of those kept, the one with the largest gain is the wave's winner and
             the new best; the others are reverted ("#n did better").
             beam, frontier: every candidate kept enters the frontier; of those that also
             beat the best (the same rule, against the best's evaluations) the largest gain
             becomes the new best.
    record   every candidate's outcome, before anything is reverted or advanced (log before
             reset); a kept one's is written at once, with its files (and the run's new best).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.context import Candidate, RunContext, usage_of
from engine.decide import GreaterPolicy, aggregate
from engine.evaluators.metric import constraint_breach
from engine.model import CRASHED, KEPT, REVERTED, VETOED, Evaluation
from engine.versions import Versions


@dataclass
class Outcome:
    """What a wave's decisions change: the versions that join the frontier, the new best."""

    kept: list[Candidate] = field(default_factory=list)
    best: Candidate | None = None


class Settler:
    """Decides and records a wave's candidates."""

    def __init__(self, ctx: RunContext, versions: Versions, policy: GreaterPolicy) -> None:
        self.ctx = ctx
        self.versions = versions
        self.policy = policy

    def decide(self, candidates: list[Candidate]) -> Outcome:
        """Every candidate's verdict; returns what joins the frontier and the new best."""
        ctx = self.ctx
        tree = self.versions.width > 1
        winner: Candidate | None = None
        best_gain = 0.0
        for cand in candidates:
            ctx.in_flight.pop(cand.exp_id, None)
            first = cand.evals[0] if cand.evals else Evaluation(CRASHED, error="no evaluation")
            parent = self.versions.get(cand.parent)
            if cand.exp_id in ctx.controls.vetoed:
                cand.verdict, cand.reason = VETOED, "vetoed while in flight"
            elif first.status != "ok" or any(e.status != "ok" for e in cand.evals):
                bad = next(e for e in cand.evals if e.status != "ok") if cand.evals else first
                cand.verdict, cand.reason = bad.status, bad.error
            elif not tree and (parent is None or cand.parent != self.versions.best_id):
                cand.verdict, cand.reason = REVERTED, "its parent is no longer the best version"
            elif parent is None:
                cand.verdict, cand.reason = REVERTED, "its parent left the frontier"
            elif first.metrics.get("guard_passed") == 0.0:
                cand.verdict, cand.reason = REVERTED, "guard command failed"
            elif breach := constraint_breach(ctx.spec.evaluate, cand.evals):
                cand.verdict, cand.reason = REVERTED, breach
            else:
                decision = self.policy.decide(cand.evals, parent.evals, ctx.spec.direction)
                cand.verdict, cand.reason = decision.verdict, decision.reason
                cand.details.update(decision.details)
                gain = decision.details.get("gain", 0.0)
                if tree or decision.verdict != KEPT:
                    continue
                if winner is None or gain > best_gain:
                    winner, best_gain = cand, gain
        if tree:
            return self._grow(candidates)
        for cand in candidates:
            if cand.verdict == KEPT and cand is not winner:
                assert winner is not None
                cand.verdict, cand.reason = REVERTED, f"#{winner.exp_id} did better in this wave"
        return Outcome([winner] if winner else [], winner)

    def _grow(self, candidates: list[Candidate]) -> Outcome:
        """Tree search: the kept join the frontier; the one that best beats the best leads."""
        best = self.versions.best
        assert best is not None
        kept = [c for c in candidates if c.verdict == KEPT]
        leader: Candidate | None = None
        lead_gain = 0.0
        for cand in kept:
            if cand.parent == best.exp_id:
                beats, gain = True, cand.details.get("gain", 0.0)
            else:
                against = self.policy.decide(cand.evals, best.evals, self.ctx.spec.direction)
                beats, gain = against.verdict == KEPT, against.details.get("gain", 0.0)
            if beats and (leader is None or gain > lead_gain):
                leader, lead_gain = cand, gain
        for cand in kept:
            cand.reason += ("; the new best version" if cand is leader
                            else f"; beats its parent #{cand.parent}: joins the frontier")
        return Outcome(kept, leader)

    def record(self, candidates: list[Candidate], outcome: Outcome) -> None:
        """Every candidate's outcome (a kept one's written at once: it is a version next)."""
        best = self.versions.best
        how = self.ctx.spec.decide.aggregate
        best_score = aggregate(best.evals, how) if best else None
        for cand in candidates:
            parent = self.versions.get(cand.parent)
            base = best_score if parent is None else aggregate(parent.evals, how)
            self._record(cand, base, cand in outcome.kept, cand is outcome.best)

    def _record(self, cand: Candidate, best_score: float | None, kept: bool, won: bool,
                ) -> None:
        ctx = self.ctx
        evals = cand.evals or [Evaluation(CRASHED)]
        first = evals[0]
        score = aggregate(evals, ctx.spec.decide.aggregate) if first.status == "ok" else None
        delta = None if score is None or best_score is None else round(score - best_score, 12)
        usage = usage_of(evals, cand.mutation.usage)
        run_update = ctx.ledger.totals(usage)
        best_files = cand.files if kept else None
        if won:
            run_update.update(best_experiment=cand.exp_id, best_score=score)
        if self.policy.learn(evals):
            run_update["noise_json"] = self.policy.noise.to_json()
        shown = "-" if score is None else f"{score:.4g}"
        origin = f"from #{cand.parent}; " if self.versions.width > 1 else ""
        ctx.log(f"#{cand.exp_id} {cand.verdict}: {cand.mutation.description} "
                f"({origin}score {shown}; {cand.reason})", exp_id=cand.exp_id)
        # One transaction: the outcome, its decision details and the pending event lines;
        # a keep's is written now (it becomes the best version next), others while the next
        # evaluation runs (engine/records.py).
        ctx.ledger.outcome(cand.exp_id, dict(
            verdict=cand.verdict or CRASHED, reason=cand.reason, score=score,
            delta=delta, metrics=first.metrics, items=first.items, usage=usage,
            error=first.error, log_tail=first.log_tail, worker=cand.worker,
            best_files=best_files, run_update=run_update, decision=cand.details), now=kept)
