"""Proposing: what the mutator is shown, asking it for a mutation of a parent version,
checking that mutation, and starting its experiment.

A mutation that cannot be used (the mutator gave up, the model's reply was bad, it touches a
file it may not, it changes nothing) is recorded at once as an `invalid` experiment with
what it cost; the loop goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from engine.ahead import ProposingAhead
from engine.calls import link as link_calls
from engine.context import Candidate, RunContext
from engine.decide import aggregate
from engine.llm import LLMUnavailable
from engine.model import (
    ABANDONED,
    CRASHED,
    INVALID,
    RUNNING,
    Mutation,
    MutationError,
    Mutator,
    Proposal,
    Usage,
)
from engine.outage import on_model_trouble
from engine.rebase import rebase
from engine.stopping import cancellable_proposal
from engine.versions import Version, Versions
from engine.workspace import PathRefused, unified_diff

#: Experiments shown to a mutator (the newest); older ones stay in the store.
CHANGELOG_WINDOW = 200


class Proposer:
    """Turns a parent version into a candidate in flight (or a recorded invalid one)."""

    def __init__(self, ctx: RunContext, mutator: Mutator, versions: Versions) -> None:
        self.ctx = ctx
        self.mutator = mutator
        self.versions = versions
        self._changelog: list[dict[str, Any]] | None = None
        self._failing: list[dict[str, Any]] = []
        self._failing_for: int | None = None
        self._lean: tuple[Version, Proposal] | None = None
        #: The next candidate, proposed and staged while the last one is evaluated.
        self.ahead = ProposingAhead(mutator, versions, self.proposal, self.check)
        #: Whether thinking ahead may happen now (set by the loop: one slot, no tiers...).
        self.may_think_ahead: Callable[[Candidate], bool] = lambda cand: False

    # ------------------------------------------------------------ what the mutator sees

    def proposal(self, parent: Version) -> Proposal:
        """What the mutator sees; the changelog is read incrementally, not re-read every round."""
        if not getattr(self.mutator, "reads_history", True):  # e.g. the params mutator
            # The same one until the parent is replaced (asked for twice a round).
            made = self._lean
            if made is None or made[0] is not parent:
                made = self._lean = (parent, Proposal(
                    self.ctx.spec.name, dict(parent.files), [], [], [], aggregate(parent.evals)))
            return made[1]
        ctx = self.ctx
        ctx.ledger.records.write()  # the changelog it reads must hold every verdict
        if self._changelog is None:
            self._changelog = ctx.store.changelog(ctx.run_id, CHANGELOG_WINDOW)
        else:
            # Rows still running may change: keep only what came before the first of them.
            running = [r["id"] for r in self._changelog if r["verdict"] == RUNNING]
            settled = min(running) - 1 if running else (
                self._changelog[-1]["id"] if self._changelog else 0)
            kept = [r for r in self._changelog if r["id"] <= settled]
            fresh = ctx.store.changelog(ctx.run_id, CHANGELOG_WINDOW, after_id=settled)
            self._changelog = (kept + fresh)[-CHANGELOG_WINDOW:]
        if self._failing_for != parent.exp_id:
            self._failing = [r for r in ctx.store.item_results(parent.exp_id)
                             if r["passed"] != 1]
            self._failing_for = parent.exp_id
        guidance = [c["argument"] for c in reversed(ctx.store.commands(ctx.run_id, limit=20))
                    if c["verb"] == "guide" and c["applied"] and c["argument"]]
        tree = self.versions.width > 1
        siblings = [r for r in self._changelog if r.get("parent") == parent.exp_id
                    and r["verdict"] != RUNNING] if tree else []
        return Proposal(ctx.spec.name, dict(parent.files), list(self._changelog),
                        list(self._failing), guidance, aggregate(parent.evals),
                        parent=parent.exp_id, parent_is_best=parent is self.versions.best,
                        siblings=siblings[-10:])

    def forget_changelog(self) -> None:
        """Verdicts of old experiments changed (veto, pin): read the changelog afresh."""
        self._changelog = None

    def check(self, mutation: Mutation, parent_files: dict[str, str]) -> None:
        """Refuse a mutation of files it may not touch, or one that changes nothing."""
        self.ctx.workspace.confine(mutation.files)
        if all(parent_files.get(p) == c for p, c in mutation.files.items()):
            raise MutationError("the mutation changes nothing")

    # ------------------------------------------------------------ proposing

    async def propose(self, round_no: int, parent: Version, wave: int) -> Candidate | None:
        """A candidate of `parent` in flight, its row inserted; None when the mutation was
        invalid (recorded)."""
        ctx = self.ctx
        ctx.ledger.round_started(round_no)
        ahead = self.ahead.take()
        if ahead is not None:  # proposed, checked and staged already
            mutation: Mutation | None = ahead.mutation
        else:
            mutation = await self._mutation(self._asked(round_no, parent, wave), round_no,
                                            parent.exp_id, wave)
        if mutation is None:
            return None
        if ctx.controls.stopping:  # a stop came while proposing: no new experiment after it
            return None
        return self.start(mutation, round_no, parent, wave)

    async def _asked(self, round_no: int, parent: Version, wave: int) -> Mutation:
        """A checked mutation of `parent`, asked for now (a stop may cancel it:
        engine/stopping.py)."""
        mutation = await cancellable_proposal(
            self.ctx, lambda: self.mutator.propose(self.proposal(parent)), round_no,
            parent.exp_id, wave)
        self.check(mutation, parent.files)
        return mutation

    async def _mutation(self, made: Awaitable[Mutation], round_no: int, parent: int,
                        wave: int) -> Mutation | None:
        """The mutation `made` gives; None for a model outage (no experiment, no round) or an
        unusable mutation (recorded as an invalid child of `parent`)."""
        try:
            return await made
        except LLMUnavailable as exc:
            self._outage(exc, round_no)
        except (MutationError, PathRefused) as exc:
            self.record_invalid(exc, round_no, parent, wave)
        return None

    def _outage(self, exc: LLMUnavailable, round_no: int) -> None:
        """An outage is not a bad idea: no experiment, no round (engine/outage.py)."""
        self.ctx.ledger.max_round = min(self.ctx.ledger.max_round, round_no - 1)
        on_model_trouble(self.ctx, exc)

    async def mutate(self, parent: Version) -> Mutation:
        """A checked mutation of `parent` (raises MutationError or PathRefused), made ahead
        of a slot by engine/stream.py."""
        mutation = await self.mutator.propose(self.proposal(parent))
        self.check(mutation, parent.files)
        return mutation

    async def from_task(self, task: asyncio.Task[Mutation], round_no: int, parent: Version,
                        wave: int) -> Candidate | None:
        """A candidate from a mutation made ahead (or its invalid experiment, recorded)."""
        self.ctx.ledger.round_started(round_no)
        mutation = await self._mutation(task, round_no, parent.exp_id, wave)
        if mutation is None or self.ctx.controls.stopping:
            return None
        return self.start(mutation, round_no, parent, wave)

    async def carried_over(self, task: asyncio.Task[Mutation], round_no: int, old: Version,
                           new: Version, wave: int) -> Candidate | None | bool:
        """A mutation made ahead from `old`, which is gone, made to `new` instead (a
        candidate, or None when it was invalid); False when it does not apply there (then
        it is recorded as abandoned)."""
        self.ctx.ledger.round_started(round_no)
        mutation = await self._mutation(task, round_no, old.exp_id, wave)
        if mutation is None:
            return None
        files = rebase(old.files, new.files, mutation.files)
        if files is None or all(new.files.get(p) == c for p, c in files.items()):
            self.record_abandoned(mutation.description, mutation.usage, old.exp_id,
                                  f"replaced by #{new.exp_id} before a slot was free, and "
                                  "the change does not carry over to it")
            return False
        note = f"proposed on #{old.exp_id}, carried over to #{new.exp_id}"
        moved = Mutation(mutation.description, files,
                         f"{mutation.rationale} ({note})" if mutation.rationale else note,
                         mutation.state, mutation.usage)
        try:
            self.check(moved, new.files)
        except (MutationError, PathRefused) as exc:
            self.record_invalid(exc, round_no, new.exp_id, wave)
            return None
        self.ctx.log(f"round {round_no}: {note}")
        return self.start(moved, round_no, new, wave)

    def record_abandoned(self, description: str, usage: Usage | None, parent: int,
                         why: str) -> None:
        """A proposal made ahead that is never evaluated: recorded with what it cost."""
        ctx = self.ctx
        usage = usage or Usage()
        ctx.ledger.records.write()
        exp_id = ctx.store.start_experiment(ctx.run_id, round=ctx.ledger.max_round,
                                            kind="candidate", parent=parent,
                                            description=description)
        reason = f"proposed ahead from #{parent}; {why}"
        ctx.store.finish_experiment(exp_id, verdict=ABANDONED, reason=reason, usage=usage,
                                    run_update=ctx.ledger.totals(usage))
        ctx.log(f"#{exp_id} abandoned: {description} ({reason})", exp_id=exp_id)

    def start(self, mutation: Mutation, round_no: int, parent: Version, wave: int,
              ) -> Candidate:
        """Insert the candidate's row (committed while its evaluation runs, with the last
        round's records; its files are added then) and put it in flight."""
        ctx = self.ctx
        row: dict[str, Any] = dict(
            round=round_no, kind="candidate", parent=parent.exp_id,
            description=mutation.description, rationale=mutation.rationale, wave=wave,
            diff=unified_diff(parent.files, {**parent.files, **mutation.files}))

        def complete() -> None:  # (a row inserted again carries them; deltas of the parent)
            row.update(files=mutation.files, parent_files=parent.files)
            ctx.store.add_versions(exp_id, mutation.files, (parent.exp_id, parent.files))
            link_calls(ctx.store.conn, exp_id, mutation.usage, counted=False)  # (a kill's)

        exp_id = ctx.ledger.records.start(lambda again: ctx.store.start_experiment(
            ctx.run_id, commit=False, exp_id=again, **row), complete)
        cand = Candidate(exp_id, mutation, parent.exp_id, parent_files=parent.files)
        ctx.in_flight[exp_id] = cand
        ctx.notify()
        return cand

    def record_invalid(self, exc: Exception, round_no: int, parent: int, wave: int) -> None:
        ctx = self.ctx
        ctx.ledger.records.write()  # keep the store in order
        usage = getattr(exc, "usage", None) or Usage()
        desc = getattr(exc, "description", "") or "invalid mutation"
        exp_id = ctx.store.start_experiment(ctx.run_id, round=round_no, kind="candidate",
                                            parent=parent, description=desc, wave=wave)
        ctx.store.finish_experiment(exp_id, verdict=INVALID, reason=str(exc), error=str(exc),
                                    usage=usage, run_update=ctx.ledger.totals(usage))
        ctx.log(f"round {round_no}: invalid mutation: {exc}", level="warning", exp_id=exp_id)
        ctx.notify()

    # ------------------------------------------------------------ thinking ahead, feedback

    def think_ahead(self, exp_id: int) -> dict[str, str] | None:
        """At candidate `exp_id`'s first pause: the next candidate's files, proposed as if
        this one will not be kept (engine/ahead.py); None when there is none to make now."""
        cand = self.ctx.in_flight.get(exp_id)
        controls = self.ctx.controls
        if (cand is None or cand.attempt or controls.paused or controls.stopping
                or not self.may_think_ahead(cand)):
            return None
        return self.ahead.think(cand)

    def feedback(self, candidates: list[Candidate], retests_waiting: bool) -> None:
        """Tell the mutator every verdict (unless it was told already, ahead)."""
        for cand in candidates:
            if not self.ahead.settle(cand, retests_waiting):
                self.mutator.feedback(cand.mutation, cand.verdict or CRASHED)
            if (observe := getattr(self.mutator, "observe", None)) is not None:
                observe(cand.mutation, cand.evals)  # its scores, once decided
