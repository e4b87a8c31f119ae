"""Retests: a marginal candidate is run again as a new experiment against the same parent,
before new proposals, so noise alone neither keeps nor reverts it (engine/noise.py holds
the bounded queue; this module starts, offers and restores its entries).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from engine.context import Candidate, RunContext
from engine.model import RETEST, REVERTED, Decision, Mutation
from engine.noise import Retest, RetestQueue
from engine.versions import Version
from engine.workspace import unified_diff


class Retests:
    """The run's marginal candidates waiting to be retested."""

    def __init__(self, ctx: RunContext, limit: int, forget_changelog: Callable[[], None]) -> None:
        self.ctx = ctx
        self.queue = RetestQueue(limit)
        self._forget_changelog = forget_changelog

    def __len__(self) -> int:
        return len(self.queue)

    def resume(self) -> None:
        """After any stop: the retests still due, from the store."""
        ctx = self.ctx
        self.queue.waiting.clear()
        for row in ctx.store.pending_retests(ctx.run_id):
            attempt = json.loads(row["decision_json"] or "{}").get("attempt", 0)
            description = re.sub(r"^retest of #\d+: ", "", row["description"])
            mutation = Mutation(description, ctx.store.version_files(row["id"]),
                                row["rationale"] or "")
            self.queue.waiting.append(Retest(row["id"], mutation, row["parent"], attempt))

    def take(self, round_no: int, wave: int,
             alive: Callable[[int], Version | None]) -> Candidate | None:
        """The next retest whose parent is still `alive`, started as a new experiment; the
        first one keeps its `retest` verdict, the new one references it and gets its own."""
        ctx = self.ctx
        if not self.queue.waiting:
            return None
        entry, stale = self.queue.next(alive=lambda pid: alive(pid) is not None)
        if entry is not None or stale:
            ctx.ledger.records.write()  # the retested experiments' own records come first
        if stale:
            self._forget_changelog()
        for old in stale:
            row = ctx.store.experiment(old.exp_id)
            ctx.store.set_verdict(old.exp_id, REVERTED, f"{(row or {}).get('reason') or ''}; "
                                  "not retested: the best version changed")
        if entry is None:
            return None
        parent = alive(entry.parent)
        assert parent is not None
        ctx.ledger.round_started(round_no)
        m = entry.mutation
        # A fresh Mutation: the proposal's cost was counted once, with the first experiment.
        mutation = Mutation(m.description, dict(m.files), m.rationale, dict(m.state))
        attempt = entry.attempt + 1
        exp_id = ctx.store.start_experiment(
            ctx.run_id, round=round_no, kind="candidate", parent=parent.exp_id,
            description=f"retest of #{entry.exp_id}: {m.description}", rationale=m.rationale,
            diff=unified_diff(parent.files, {**parent.files, **m.files}), wave=wave,
            files=m.files, parent_files=parent.files)
        ctx.store.set_decision(exp_id, {"retest_of": entry.exp_id, "attempt": attempt})
        cand = Candidate(exp_id, mutation, parent.exp_id, attempt=attempt,
                         parent_files=parent.files)
        cand.details.update(retest_of=entry.exp_id, attempt=attempt)
        ctx.in_flight[exp_id] = cand
        ctx.log(f"round {round_no}: retesting #{entry.exp_id}", exp_id=exp_id)
        ctx.notify()
        return cand

    def offer(self, candidates: list[Candidate], winner: Candidate | None) -> None:
        """Queue the wave's marginal candidates for a retest (or revert them: too many
        attempts, a full queue, or a winner in this wave that moves the best on)."""
        for cand in candidates:
            if cand.verdict == RETEST:
                decision = self.queue.offer(
                    Decision(RETEST, cand.reason, cand.details), cand.exp_id, cand.mutation,
                    cand.parent, cand.attempt, winner.exp_id if winner else None)
                cand.verdict, cand.reason = decision.verdict, decision.reason
