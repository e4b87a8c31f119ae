"""The proposal stream: where the slots' candidates come from, proposed ahead of the slots.

A mutator that takes time (a model, a coding agent: 10-60 s) would leave every slot idle
while it thinks. So while the slots' candidates are evaluating, the stream keeps `depth`
proposals in the making, from the parents the search picks now — as if the candidates
being evaluated will be reverted, which most are. A slot that frees up (engine/waves.py)
takes the first of them that is ready (else the oldest):

    parent still alive (in the frontier)   the proposal is used (its parent is unchanged)
    parent gone (a keep moved the greedy   its change is carried over to a live parent when
    best on, a veto, pruned)               it still applies there (engine/rebase.py: it
                                           edits other lines); else it is abandoned —
                                           recorded as an `abandoned` experiment with what
                                           it cost — and a new one is asked for

How many are in the making: what the spec's `ahead` says, or by default as many as keep the
slots fed — the slots use one every E/S seconds (E: an evaluation's time, S: `parallel`)
and one takes L to make, so about S·L/E are needed, and half as many again for evaluations
that vary (bench/pipeline.py, L = E, evaluations of E × U(0.5, 1.5) on two slots: busy 0.90
without that margin, 0.97 with it); at least two (one for one slot), at most 2·S, measured
as the run goes (the first ones: S). Fewer in the making means fewer a keep makes stale.

Beam and frontier search keep the old parent alive after a keep, so their proposals made
ahead stay valid as siblings. Slots pick up retests first, as before. A mutator that can
propose ahead cheaply and exactly (`propose_ahead`, the params mutator) uses engine/ahead.py
instead; `ahead: 0` in a spec turns the stream off (propose when a slot is free).
"""

from __future__ import annotations

import asyncio
import math
import time
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
        #: Proposals kept in flight ahead of the slots (0: none); by default, a start that
        #: the measured latencies adjust (`wanted`).
        self.depth = depth
        self.adaptive = ctx.spec.ahead is None
        self.waiting: list[_Ahead] = []
        #: Moving averages of a proposal's seconds and of an evaluation's (None: not yet).
        self.latency: float | None = None
        self.evaluation: float | None = None

    def wanted(self) -> int:
        """How many proposals to keep in the making now (see the module's docstring)."""
        if not self.adaptive or not self.depth or self.latency is None or not self.evaluation:
            return self.depth
        slots = self.ctx.spec.parallel
        need = math.ceil(1.5 * slots * self.latency / self.evaluation)
        return max(min(2, slots), min(2 * slots, need))

    def evaluated(self, seconds: float) -> None:
        """A candidate was scored in `seconds` (from its start to its landing)."""
        self.evaluation = _average(self.evaluation, seconds)

    async def _made(self, parent: Version) -> Mutation:
        started = time.monotonic()
        mutation = await self.proposer.mutate(parent)
        self.latency = _average(self.latency, time.monotonic() - started)
        return mutation

    def alive(self, parent_id: int) -> Version | None:
        return self.versions.get(parent_id)

    def ready(self) -> bool:
        """Whether next() has a candidate without waiting for the mutator: a retest, a
        proposal made ahead that is done, or none made ahead (then it is asked at once)."""
        return bool(not self.depth or len(self.retests)
                    or any(a.task.done() for a in self.waiting))

    async def next(self, round_no: int, wave: int, wait: bool = True) -> Candidate | None:
        """The next candidate in flight (None: its mutation was invalid, and recorded; or,
        unless `wait`, no proposal made ahead is ready yet)."""
        retest = self.retests.take(round_no, wave, self.alive)
        if retest is not None:
            return retest
        parent = None
        while self.waiting:
            ahead = next((a for a in self.waiting if a.task.done()), None)
            if ahead is None:
                if not wait:
                    break
                ahead = self.waiting[0]
            self.waiting.remove(ahead)
            if self.alive(ahead.parent.exp_id) is not None:
                return await self.proposer.from_task(ahead.task, round_no, ahead.parent, wave)
            # Its parent is gone: carried over to the parent the search picks now, if the
            # change still applies there; else abandoned (recorded), and the next one made
            # ahead is tried (a slot waits for a fresh proposal only when none is left).
            parent = self.search.parents(1)[0]
            cand = await self.proposer.carried_over(ahead.task, round_no, ahead.parent,
                                                    parent, wave)
            if cand is not False:
                return cand
        if not wait and self.depth:  # (the slot waits for one being made: no round yet)
            self.ctx.ledger.max_round = min(self.ctx.ledger.max_round, round_no - 1)
            return None
        if parent is None:
            parent = self.search.parents(1)[0]
        return await self.proposer.propose(round_no, parent, wave)

    def prefetch(self, n: int | None = None) -> None:
        """Start proposing the next candidates at once (at most `n`), keeping `wanted()` in
        the making (while the slots are busy; or as free slots are filled, so their
        candidates are not proposed one after another)."""
        controls = self.ctx.controls
        if not self.depth or controls.paused or controls.stopping:
            return
        # Those whose parent a keep replaced are proposed again at once (they are still
        # tried when a slot takes them: their change may carry over).
        room = self.wanted() - sum(self.alive(a.parent.exp_id) is not None
                                   for a in self.waiting)
        rounds = self.ctx.spec.stop.max_rounds
        if rounds is not None:  # never a proposal max_rounds would not let run
            room = min(room, rounds - self.ctx.ledger.max_round - len(self.waiting))
        for parent in self.search.parents(max(0, room if n is None else min(n, room))):
            task = asyncio.create_task(self._made(parent))
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


def _average(old: float | None, new: float) -> float:
    """An exponential moving average (recent ones count most: a run's pace changes)."""
    return new if old is None else 0.7 * old + 0.3 * new
