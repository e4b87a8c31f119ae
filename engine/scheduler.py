"""A library's scheduler: which of its runs gets the next round, under one budget.

Every run of an `each:` spec asks for its turn before each round (`RunContext.turn`, one
line in the loop). With `library:` in the spec the scheduler caps the library —
`max_parallel` runs in a round at once, `daily_cost_usd` (the runs wait for the next day),
`max_cost_usd` (the runs stop) — and gives a free slot to the waiting run with the best
expected gain per dollar: a UCB over each run's recent record (a discounted keep rate × the
size of its gains, relative to its baseline, per dollar a round costs), so a new run, or a
rested one tried again, is tried first and no run is shut out for ever. A run that goes
`rest_after` rounds without a keep rests (a plateau); it is tried again after
`rest_minutes`, or at once when its file changes (a person edited it: a new baseline,
engine/handedit.py) or the library's playbook learned something (engine/libplaybook.py:
the scheduler keeps it, told of every keep, and hands it to the runs' model mutators).

Why each run waits is written to the store (`runs.waiting`, once a second, one
transaction) for `status` and the app: "resting: plateau since 14:02", "waiting: library
budget", "waiting: max_parallel". `Policy` holds the arithmetic alone, with no clock and no
event loop, so bench/scheduler.py simulates it against round-robin with the same code.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import cadence
from engine.handedit import HandEdits
from engine.libplaybook import LibraryPlaybook, set_playbook
from engine.libspec import Library
from engine.ucb import DECAY, Arm, Policy  # noqa: F401 - (re-exported)

#: How often waiting runs are looked at again (a rest over, a new day, a stop), and the
#: waiting reasons written.
TICK_S = 1.0


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")


def _midnight(now: float) -> float:
    return datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0,
                                               microsecond=0).timestamp()


@dataclass(eq=False)
class _Member:
    loop: Any  # a RunLoop (not imported: the loop imports nothing of the host's)
    arm: Arm
    before: tuple[float | None, float] = (None, 0.0)  # (best score, cost) at its grant
    waiter: asyncio.Future[bool] | None = None
    holding: bool = False


@dataclass(eq=False)
class LibraryScheduler:
    """One library's runs: their turns, their budget, and why each waits."""

    store: Any
    limits: Library | None
    members: dict[int, _Member] = field(default_factory=dict)
    reasons: dict[int, str | None] = field(default_factory=dict)
    written: dict[int, str | None] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    today: float = 0.0
    ticker: asyncio.Task[None] | None = None
    edits: HandEdits = field(default_factory=HandEdits)
    waiting: dict[int, _Member] = field(default_factory=dict)
    busy: set[int] = field(default_factory=set)
    #: The library's money, all time and today, counted as rounds end; and each run's
    #: spending when last counted.
    total: float = 0.0
    total_today: float = 0.0
    cost_of: dict[int, float] = field(default_factory=dict)
    #: The library's shared playbook, once a run's mutator reads playbooks (None: none does).
    playbook: LibraryPlaybook | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.limits is not None:
            self.policy = Policy(self.limits.explore, self.limits.rest_after,
                                 self.limits.rest_minutes * 60)
        self.today = _midnight(time.time())

    # ------------------------------------------------------------ members

    def join(self, loop: Any) -> None:
        rid = loop.run_id
        m = _Member(loop, Arm(rid, loop.spec.name))
        self.members[rid] = m
        # Money is counted once per run, whatever joins again: what it spent before counts
        # (the store's figure: the loop reads it only when it starts).
        row = self.store.get_run(rid) if self.limits is not None else None
        cost = (row["cost_usd"] or 0.0) if row else loop.ledger.cost
        self.total += cost - self.cost_of.get(rid, 0.0)
        if rid not in self.cost_of and self.limits is not None:
            self.total_today += self.store.cost_since(rid, self.today)
        self.cost_of[rid] = cost
        if self.limits is None or self.limits.playbook:
            if self.playbook is None and isinstance(getattr(loop.mutator, "playbooks", None),
                                                    list):
                self.playbook = LibraryPlaybook(self.store, self.name or loop.spec.name,
                                                str(loop.spec.path or ""))
            if self.playbook is not None:
                self.playbook.refresh()  # (read once, not at each of 200 joins)
                set_playbook(loop.mutator, self.playbook.name, self.playbook.text)

    def learned(self) -> None:
        """The library's playbook read again if a keep made it due; on a new text every run
        reads it from its next proposal, and the resting runs are tried again."""
        book = self.playbook
        if book is None or not book.dirty or not book.refresh():
            return
        for m in self.members.values():
            set_playbook(m.loop.mutator, book.name, book.text)
            m.loop.log(f"library playbook updated ({len(book.lessons[0])} kinds of change "
                       f"helped, {len(book.lessons[1])} never did): {book.path}")
        woken = False
        for m in self.waiting.values():
            if m.arm.resting_since is not None:
                self.policy.revisit(m.arm)
                woken = True
        if woken:
            self.dispatch()

    def leave(self, loop: Any) -> None:
        m = self.members.pop(loop.run_id, None)
        self.waiting.pop(loop.run_id, None)
        if m is not None:
            self._count(m)
            self.busy.discard(loop.run_id)
            if m.waiter is not None and not m.waiter.done():
                m.waiter.set_result(False)
        self.reasons[loop.run_id] = None
        self._flush()
        self.dispatch()
        if not self.members and self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None

    def wake(self, loop: Any) -> None:
        """A stop came: a waiting run goes on at once (to see it)."""
        m = self.waiting.pop(loop.run_id, None)
        if m is not None and m.waiter is not None and not m.waiter.done():
            m.waiter.set_result(False)

    # ------------------------------------------------------------ turns

    async def turn(self, loop: Any) -> None:
        """Wait for this run's next round (the round before it is over). Returns at once
        when the run should stop instead (its stop rules, a stop, the library's budget)."""
        m = self.members.get(loop.run_id)
        if m is None:
            return
        if m.holding:
            self._release(m)
        self.learned()
        if self.limits is not None:
            if loop.stopping or self.stop_reason():
                return
            if self.ticker is None or self.ticker.done():
                self.ticker = asyncio.get_running_loop().create_task(self._tick())
            m.waiter = asyncio.get_running_loop().create_future()
            self.waiting[loop.run_id] = m
            self.dispatch()
            if not m.waiter.done():
                await m.waiter
            granted, m.waiter = m.waiter.result(), None
            if not granted:
                return
        m.holding = True
        self.busy.add(loop.run_id)
        if self.edits.check(loop):  # a person's edit: a new baseline, a new record
            m.arm.wake()
        best = loop.versions.best
        m.before = (best.score if best is not None else None, loop.ledger.cost)

    def _count(self, m: _Member) -> None:
        """The run's money since it was last counted, into the library's totals."""
        cost = m.loop.ledger.cost
        spent = cost - self.cost_of.get(m.arm.run_id, cost)
        self.cost_of[m.arm.run_id] = cost
        self.total += spent
        self.total_today += spent

    def _release(self, m: _Member) -> None:
        m.holding = False
        self.busy.discard(m.arm.run_id)
        self._count(m)
        loop, arm = m.loop, m.arm
        best = loop.versions.best
        score, cost = m.before
        now = best.score if best is not None else None
        gain = 0.0
        if score is not None and now is not None and now != score:
            sign = -1.0 if loop.spec.direction == "minimize" else 1.0
            gain = sign * (now - score) / (abs(score) or 1.0)  # relative: runs compare
        if gain > 0 and self.playbook is not None:
            self.playbook.note_keep()
        if self.limits is None:
            return  # nothing is scheduled: no record to keep
        self.policy.observe(arm, gain, loop.ledger.cost - cost, time.time())
        if arm.resting_since is not None:
            arm.mark = self._mark(loop)

    def stop_reason(self) -> str | None:
        """The library's all-time budget reached: every run of it stops."""
        cap = self.limits.max_cost_usd if self.limits else None
        if cap is None or self.total < cap:
            return None
        return f"library budget reached (${self.total:.4f} of ${cap:g})"

    def dispatch(self, look: bool = False) -> None:
        """Give free slots to the waiting runs that deserve them; note why the rest wait.
        `look` (once a second, not every round): whether resting runs' files changed, and
        every waiting run's reason."""
        limits = self.limits
        if not self.waiting or limits is None:
            return
        busy = sum(1 for rid in self.busy if not self.members[rid].loop.paused)
        free = len(self.waiting) if limits.max_parallel is None else limits.max_parallel - busy
        if free <= 0 and not look:
            return  # nothing to give: the reasons are brought up to date each second
        waiting = list(self.waiting.values())
        if limits.daily_cost_usd is not None and self.total_today >= limits.daily_cost_usd:
            why = (f"waiting: library budget (${self.total_today:.4f} of "
                   f"${limits.daily_cost_usd:g} today)")
            for m in waiting:
                self.reasons[m.arm.run_id] = why
            return
        now = time.time()
        ready = []
        for m in waiting:
            arm = m.arm
            if arm.resting_since is not None and not self.policy.ready(
                    arm, now, changed=look and self._mark(m.loop) != arm.mark):
                if look or not (self.reasons.get(arm.run_id) or "").startswith("resting"):
                    self.reasons[arm.run_id] = (  # (formatted once a second, not a round)
                        f"resting: plateau since {clock(arm.resting_since)}, until "
                        f"{clock(self.policy.rest_until(arm))}, or its file"
                        + (" or the library playbook changes" if self.playbook else " changes"))
                continue
            if not m.loop.paused:
                ready.append(m)
        by_arm = {id(m.arm): m for m in ready}
        arms = [m.arm for m in ready]
        while free > 0 and arms:
            arm = self.policy.pick(arms)
            arms.remove(arm)
            m = by_arm[id(arm)]
            del self.waiting[arm.run_id]
            m.waiter.set_result(True)
            self.reasons[arm.run_id] = None
            free -= 1
        why = f"waiting: max_parallel ({limits.max_parallel} busy)"
        reasons = self.reasons
        for arm in arms:
            reasons[arm.run_id] = why

    @staticmethod
    def _mark(loop: Any) -> Any:
        """The run's file as it stands (size and time): a change wakes a resting run."""
        try:
            st = os.stat(loop.workspace.root / loop.spec.target.files[0])
        except (OSError, IndexError):
            return None
        return (st.st_size, st.st_mtime_ns)

    async def _tick(self) -> None:
        while True:
            await cadence.beat(TICK_S)
            try:
                midnight = _midnight(time.time())
                if midnight != self.today:  # a new day: its budget starts from nothing
                    self.today, self.total_today = midnight, 0.0
                for rid, m in list(self.waiting.items()):
                    if m.loop.stopping or m.loop.check_stop(mid_wave=True):
                        del self.waiting[rid]  # its own stop rules: let it see them
                        if m.waiter is not None and not m.waiter.done():
                            m.waiter.set_result(False)
                self.dispatch(look=True)
                self._flush()
            except Exception as exc:  # the ticker must outlive one bad moment
                try:
                    self.store.add_event(None, f"library scheduler: {exc!r}", level="error")
                except Exception:
                    pass

    def _flush(self) -> None:
        changed = {rid: why for rid, why in self.reasons.items() if self.written.get(rid) != why}
        if changed:
            self.store.set_waiting(changed)
            self.written.update(changed)


class Libraries:
    """The host's schedulers: one per library spec (its file and its glob)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.by_key: dict[tuple[str, str], LibraryScheduler] = {}
        self.of_run: dict[int, LibraryScheduler] = {}

    def join(self, loop: Any) -> None:
        spec = loop.spec
        if spec.target.each is None:
            return
        key = (str(spec.path), spec.target.each)
        sched = self.by_key.get(key)
        if sched is None or sched.limits != spec.library:
            sched = self.by_key[key] = LibraryScheduler(
                self.store, spec.library, name=Path(spec.path).stem if spec.path else "")
        sched.join(loop)
        self.of_run[loop.run_id] = sched
        loop.ctx.turn = lambda: sched.turn(loop)
        loop.ctx.library_stop = sched.stop_reason

    def leave(self, loop: Any) -> None:
        sched = self.of_run.pop(loop.run_id, None)
        if sched is not None:
            sched.leave(loop)

    def vetoed(self, loop: Any) -> None:
        """A person vetoed one of the run's experiments: its library's playbook learns it."""
        sched = self.of_run.get(loop.run_id)
        if sched is not None and sched.playbook is not None:
            sched.playbook.note_veto()

    def wake(self, loop: Any) -> None:
        sched = self.of_run.get(loop.run_id)
        if sched is not None:
            sched.wake(loop)
