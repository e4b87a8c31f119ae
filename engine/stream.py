"""The proposal stream: where a wave's candidates come from, proposed ahead of the slots.

A mutator that takes time (a model, a coding agent: 10-60 s) would leave every slot idle
while it thinks. So once a wave's candidates are evaluating, the stream already asks the
mutator for the next wave's, from the parents the search picks now — as if the candidates
being evaluated will be reverted, which most are. When the next wave starts, it takes those
proposals first:

    parent still alive (in the frontier)   the proposal is used (its parent is unchanged)
    parent gone (a keep moved the greedy   its change is carried over to a live parent when
    best on, a veto, pruned)               it still applies there (engine/rebase.py: it
                                           edits other lines); else it is abandoned —
                                           recorded as an `abandoned` experiment with what
                                           it cost — and a new one is asked for

Beam and frontier search keep the old parent alive after a keep, so their proposals made
ahead stay valid as siblings. Slots pick up retests first, as before. A mutator that can
propose ahead cheaply and exactly (`propose_ahead`, the params mutator) uses engine/ahead.py
instead; `ahead: 0` in a spec turns the stream off (propose when a slot is free).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine.context import Candidate, RunContext
from engine.model import Mutation
from engine.proposer import Proposer
from engine.retests import Retests
from engine.search import Greedy
from engine.versions import Version, Versions


@dataclass(eq=False)
class _Ahead:
    """A proposal being made (or made) ahead, and the parent it edits."""

    parent: Version
    task: asyncio.Task[Mutation]


class ProposalStream:
    """A run's source of candidates: retests, proposals made ahead, fresh proposals."""

    def __init__(self, ctx: RunContext, proposer: Proposer, search: Greedy, versions: Versions,
                 retests: Retests, depth: int) -> None:
        self.ctx = ctx
        self.proposer = proposer
        self.search = search
        self.versions = versions
        self.retests = retests
        #: Proposals kept in flight ahead of the slots (0: none).
        self.depth = depth
        self.waiting: list[_Ahead] = []

    def alive(self, parent_id: int) -> Version | None:
        return self.versions.get(parent_id)

    async def next(self, round_no: int, wave: int) -> Candidate | None:
        """The next candidate in flight (None: its mutation was invalid, and recorded)."""
        retest = self.retests.take(round_no, wave, self.alive)
        if retest is not None:
            return retest
        if self.waiting:
            ahead = self.waiting.pop(0)
            if self.alive(ahead.parent.exp_id) is not None:
                return await self.proposer.from_task(ahead.task, round_no, ahead.parent, wave)
            # Its parent is gone: carried over to the parent the search picks now, if the
            # change still applies there; else abandoned (recorded) and proposed afresh.
            parent = self.search.parents(1)[0]
            cand = await self.proposer.carried_over(ahead.task, round_no, ahead.parent,
                                                    parent, wave)
            if cand is not False:
                return cand
            return await self.proposer.propose(round_no, parent, wave)
        parent = self.search.parents(1)[0]
        return await self.proposer.propose(round_no, parent, wave)

    def prefetch(self, n: int) -> None:
        """Start proposing up to `n` of the next candidates at once (while the slots are
        busy; or as a wave starts, so its candidates are not proposed one after another)."""
        controls = self.ctx.controls
        if not self.depth or controls.paused or controls.stopping:
            return
        room = self.depth - len(self.waiting)
        rounds = self.ctx.spec.stop.max_rounds
        if rounds is not None:  # never a proposal max_rounds would not let run
            room = min(room, rounds - self.ctx.ledger.max_round - len(self.waiting))
        for parent in self.search.parents(max(0, min(n, room))):
            task = asyncio.create_task(self.proposer.mutate(parent))
            self.waiting.append(_Ahead(parent, task))

    def _record(self, ahead: _Ahead) -> None:
        if ahead.task.cancelled():
            return
        exc = ahead.task.exception()
        usage = getattr(exc, "usage", None) if exc is not None else ahead.task.result().usage
        description = (ahead.task.result().description if exc is None
                       else getattr(exc, "description", "") or "invalid mutation")
        self.proposer.record_abandoned(description, usage, ahead.parent.exp_id,
                                       "the run stopped before a slot was free")

    async def close(self) -> None:
        """The run stops: proposals still being made are cancelled, made ones recorded."""
        waiting, self.waiting = self.waiting, []
        for ahead in waiting:
            if not ahead.task.done():
                ahead.task.cancel()
        await asyncio.gather(*(a.task for a in waiting), return_exceptions=True)
        for ahead in waiting:
            self._record(ahead)
