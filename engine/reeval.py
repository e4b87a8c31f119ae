"""Re-evaluating the best version once it has stood `reeval_every` candidates, so a lucky
best does not stand forever (the policy decides what its fresh evaluations replace)."""

from __future__ import annotations

import asyncio

from engine.context import RunContext, usage_of
from engine.decide import GreaterPolicy, aggregate
from engine.model import CRASHED, Evaluation
from engine.noise import reeval_due
from engine.scoring import Scorer
from engine.stopping import interrupted
from engine.target import confirm_due
from engine.versions import Versions
from engine.workers.tiers import Tier


class Reevaluator:
    """Scores the best version afresh when it is due."""

    def __init__(self, ctx: RunContext, scorer: Scorer, versions: Versions,
                 policy: GreaterPolicy, tier: Tier, lock: asyncio.Lock) -> None:
        self.ctx = ctx
        self.scorer = scorer
        self.versions = versions
        self.policy = policy
        self.tier = tier
        self.lock = lock  # the best version's: held while deciding

    async def maybe(self, wave: int) -> bool:
        """Re-evaluate the best version if due; True when it did (the re-evaluation used a
        round)."""
        ctx, best = self.ctx, self.versions.best
        every = ctx.spec.decide.reeval_every
        if best is None:
            return False
        if not confirm_due(ctx):  # engine/target.py: a best at the target is confirmed first
            if not every:
                return False
            ctx.ledger.records.write()  # it counts finished candidates
            last = ctx.store.last_reeval(ctx.run_id, best.exp_id)
            since = ctx.store.candidates_since(ctx.run_id, last["id"] if last else best.exp_id)
            if not reeval_due(every, since):
                return False
        ctx.ledger.round_started(ctx.ledger.max_round + 1)
        exp_id = ctx.store.start_experiment(
            ctx.run_id, round=ctx.ledger.max_round, kind="reeval", parent=best.exp_id,
            description=f"re-evaluate #{best.exp_id}", wave=wave)
        ctx.log(f"re-evaluating the best version #{best.exp_id}", exp_id=exp_id)
        ctx.notify()
        try:
            evals, worker = await self.scorer.score(exp_id, dict(best.files),
                                                    self.policy.baseline_repeats, self.tier)
        except asyncio.CancelledError:
            interrupted(ctx, exp_id, "stopped before the re-evaluation finished")
            raise
        async with self.lock:
            self._settle(exp_id, best.exp_id, evals, worker)
        ctx.notify()
        return True

    def _settle(self, exp_id: int, best_id: int, evals: list[Evaluation], worker: str) -> None:
        ctx, policy, how = self.ctx, self.policy, self.ctx.spec.decide.aggregate
        best = self.versions.best
        assert best is not None
        ok = [e for e in evals if e.status == "ok"]
        first = evals[0] if evals else Evaluation(CRASHED, error="no evaluation")
        old = aggregate(best.evals, how)
        score = aggregate(ok, how)
        if score is None:
            verdict, reason, details = first.status, first.error or "no score", {}
        else:
            decision = policy.reevaluate(best.evals, ok, ctx.spec.direction)
            verdict, reason, details = decision.verdict, decision.reason, decision.details
        applied = score is not None and best.exp_id == best_id
        if score is not None and not applied:
            reason += "; not applied: the best version changed meanwhile"
        run_update = ctx.ledger.totals(usage_of(evals))
        incumbent = policy.reevaluated(best.evals, ok)
        if applied:
            run_update["best_score"] = aggregate(incumbent, how)
        ctx.store.finish_experiment(
            exp_id, verdict=verdict, reason=reason, score=score,
            delta=None if score is None or old is None else round(score - old, 12),
            metrics=first.metrics, items=first.items, usage=usage_of(evals), error=first.error,
            log_tail=first.log_tail, worker=worker, run_update=run_update)
        if details:
            ctx.store.set_decision(exp_id, details)
        if applied:
            self.versions.rescored(best_id, incumbent)
        if policy.learn(ok):
            ctx.store.update_run(ctx.run_id, noise_json=policy.noise.to_json())
        ctx.log(f"#{exp_id} {verdict}: {reason}", exp_id=exp_id)
