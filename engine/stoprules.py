"""The stop rules of a run: a stop command, the target reached `streak` times in a row, max
rounds, max time, max cost (counting what is in flight), a plateau, failures in a row."""

from __future__ import annotations

from engine.context import RunContext
from engine.model import ABANDONED, ADVANCING, FAILURES, INTERRUPTED, RUNNING
from engine.target import target_reached


class StopRules:
    """Answers "stop now?" for one run."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._baseline_cost: float | None = None  # the first experiment's cost, once known

    def check(self, *, mid_wave: bool = False) -> str | None:
        """The stop rule that applies now, if any. `mid_wave`: between two proposals of one
        wave, where nothing has been recorded since the last check, so the rules that read
        recent outcomes (target streak, plateau, failures) are skipped."""
        ctx = self.ctx
        if ctx.controls.stopping:
            return "stopped"
        stop, target = ctx.spec.stop, ctx.spec.target_score
        records = ctx.ledger.records
        if target is not None and not mid_wave and (reached := target_reached(ctx)):
            return reached  # engine/target.py: the best, confirmed by re-evaluations
        if stop.max_rounds is not None and ctx.ledger.max_round >= stop.max_rounds:
            return f"max rounds ({stop.max_rounds}) reached"
        if stop.max_minutes is not None and ctx.ledger.elapsed() >= stop.max_minutes * 60:
            return f"max time ({stop.max_minutes:g} min) reached"
        if stop.max_cost_usd is not None and (
                ctx.ledger.cost + self.in_flight_cost() >= stop.max_cost_usd):
            return f"max cost (${stop.max_cost_usd:g}) reached"
        verdicts: list[str] = []  # of the newest candidates, newest first
        need = max(stop.plateau or 0, stop.max_failures or 0)
        if not mid_wave and need:
            decided = dict(records.decided()) if records.waiting else {}  # not yet written
            for exp_id, kind, verdict in ctx.store.recent_verdicts(  # (room for skipped rows)
                    ctx.run_id, 2 * max(stop.streak, need) + 8):
                verdict = decided.get(exp_id, verdict)
                # (a proposal abandoned unevaluated is no round of the search; a round a
                # stop or kill interrupted is no round without a keep, nor a failure)
                if kind == "candidate" and verdict not in (ABANDONED, INTERRUPTED):
                    verdicts.append(verdict)
                    if len(verdicts) == need:
                        break
        if stop.plateau is not None and len(verdicts) >= stop.plateau and not any(
                v in ADVANCING for v in verdicts[: stop.plateau]):
            return f"plateau: {stop.plateau} rounds without a keep"
        if stop.max_failures is not None and len(verdicts) >= stop.max_failures and all(
                v in FAILURES for v in verdicts[: stop.max_failures]):
            return f"{stop.max_failures} failures in a row"
        return None

    def in_flight_cost(self) -> float:
        """Money committed but not yet recorded: the in-flight candidates' mutations, plus
        their evaluations estimated at the baseline's cost."""
        ctx = self.ctx
        if not ctx.in_flight:
            return 0.0
        if self._baseline_cost is None:  # read once it is final: asked before every proposal
            first = ctx.store.experiments(ctx.run_id, limit=1)
            if first and first[0]["verdict"] != RUNNING:
                self._baseline_cost = first[0]["cost_usd"] or 0.0
        per_eval = self._baseline_cost or 0.0
        return sum(c.mutation.usage.cost_usd + per_eval for c in ctx.in_flight.values())
