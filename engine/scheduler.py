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
engine/handedit.py).

Why each run waits is written to the store (`runs.waiting`, once a second, one
transaction) for `status` and the app: "resting: plateau since 14:02", "waiting: library
budget", "waiting: max_parallel". `Policy` holds the arithmetic alone, with no clock and no
event loop, so bench/scheduler.py simulates it against round-robin with the same code.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.handedit import HandEdits
from engine.libspec import Library

#: How often waiting runs are looked at again (a rest over, a new day, a stop), and the
#: waiting reasons written.
TICK_S = 1.0
#: How much each round's record weighs against the ones before (recent rounds count more).
DECAY = 0.9


@dataclass(eq=False)
class Arm:
    """One run's record, as the policy sees it."""

    run_id: int
    name: str = ""
    rounds: int = 0  # rounds given since the run joined (or its file changed)
    weight: float = 0.0  # discounted rounds
    gain: float = 0.0  # discounted gain, relative to the best before it
    cost: float = 0.0  # discounted money
    since_keep: int = 0
    resting_since: float | None = None
    #: Rests in a row without a keep between them: each rest is twice as long, and the
    #: visit after one is a short probe, not a new plateau's worth of rounds.
    rests: int = 0
    mark: Any = None  # what the run's file looked like when it went to rest

    def wake(self) -> None:
        """Tried again as if new: its old record says nothing of the file it has now."""
        self.rounds, self.weight, self.gain, self.cost, self.since_keep = 0, 0.0, 0.0, 0.0, 0
        self.resting_since, self.mark, self.rests = None, None, 0


@dataclass
class Policy:
    """Expected gain per dollar with an exploration bonus (UCB1), and plateau rests."""

    explore: float = 0.5
    rest_after: int = 10
    rest_s: float = 3600.0
    decay: float = DECAY
    total: int = 0  # rounds given to every arm
    #: The longest rest, as a multiple of rest_s.
    max_backoff: int = 16
    #: Rounds every arm gets before its record counts.
    tries: int = 3

    def observe(self, arm: Arm, gain: float, cost: float, now: float) -> None:
        """A round of `arm` ended: `gain` > 0 when it kept something (relative size)."""
        self.total += 1
        arm.rounds += 1
        arm.weight = self.decay * arm.weight + 1
        arm.gain = self.decay * arm.gain + max(gain, 0.0)
        arm.cost = self.decay * arm.cost + max(cost, 0.0)
        if gain > 0:
            arm.since_keep, arm.rests = 0, 0
        else:
            arm.since_keep += 1
        limit = self.rest_after if arm.rests == 0 else max(1, self.rest_after // 3)
        if arm.since_keep >= limit:
            arm.resting_since, arm.rests = now, arm.rests + 1

    def rest_until(self, arm: Arm) -> float:
        assert arm.resting_since is not None
        return arm.resting_since + self.rest_s * min(2 ** (arm.rests - 1), self.max_backoff)

    def ready(self, arm: Arm, now: float, changed: bool = False) -> bool:
        """May `arm` have a round now? A resting one wakes when its rest is over (for a
        probe) or at once when its file changed (as new)."""
        if arm.resting_since is None:
            return True
        if changed:
            arm.wake()
            return True
        if now >= self.rest_until(arm):
            arm.resting_since, arm.since_keep = None, 0
            return True
        return False

    def pick(self, arms: list[Arm]) -> Arm:
        """The arm to give the next round: one tried fewer than `tries` times first (fewest
        first, in the order given: one unlucky round says little), then the best UCB."""
        fewest = min(arms, key=lambda a: a.rounds)
        if fewest.rounds < self.tries:
            return fewest
        rates = [a.cost / a.weight for a in arms if a.cost > 0]
        unit = sum(rates) / len(rates) if rates else 1.0  # unknown costs: the library's mean
        values = [(a.gain / a.weight) / (a.cost / a.weight if a.cost > 0 else unit)
                  for a in arms]
        top = max(values) or 1.0
        log_total = math.log(max(self.total, 2))
        best, best_score = arms[0], -math.inf
        for arm, value in zip(arms, values, strict=True):
            score = value / top + self.explore * math.sqrt(log_total / arm.rounds)
            if score > best_score:
                best, best_score = arm, score
        return best


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
    day_base: float = 0.0  # its cost when today began
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

    def __post_init__(self) -> None:
        if self.limits is not None:
            self.policy = Policy(self.limits.explore, self.limits.rest_after,
                                 self.limits.rest_minutes * 60)
        self.today = _midnight(time.time())

    # ------------------------------------------------------------ members

    def join(self, loop: Any) -> None:
        spent_today = self.store.cost_since(loop.run_id, self.today) if self.limits else 0.0
        m = _Member(loop, Arm(loop.run_id, loop.spec.name))
        m.day_base = (loop.ledger.cost if hasattr(loop, "ledger") else 0.0) - spent_today
        self.members[loop.run_id] = m

    def leave(self, loop: Any) -> None:
        m = self.members.pop(loop.run_id, None)
        if m is not None and m.waiter is not None and not m.waiter.done():
            m.waiter.set_result(False)
        self.reasons[loop.run_id] = None
        self._flush()
        self.dispatch()
        if not self.members and self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None

    def wake(self, loop: Any) -> None:
        """A stop came: a waiting run goes on at once (to see it)."""
        m = self.members.get(loop.run_id)
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
        if loop.stopping or self.stop_reason():
            return
        if self.limits is not None and (self.ticker is None or self.ticker.done()):
            self.ticker = asyncio.get_running_loop().create_task(self._tick())
        m.waiter = asyncio.get_running_loop().create_future()
        self.dispatch()
        if not m.waiter.done():
            await m.waiter
        granted, m.waiter = m.waiter.result(), None
        if granted:
            m.holding = True
            if self.edits.check(loop):  # a person's edit: a new baseline, a new record
                m.arm.wake()
            best = loop.versions.best
            m.before = (best.score if best is not None else None, loop.ledger.cost)

    def _release(self, m: _Member) -> None:
        m.holding = False
        loop, arm = m.loop, m.arm
        best = loop.versions.best
        score, cost = m.before
        now = best.score if best is not None else None
        gain = 0.0
        if score is not None and now is not None and now != score:
            sign = -1.0 if loop.spec.direction == "minimize" else 1.0
            gain = sign * (now - score) / (abs(score) or 1.0)  # relative: runs compare
        self.policy.observe(arm, gain, loop.ledger.cost - cost, time.time())
        if arm.resting_since is not None:
            arm.mark = self._mark(loop)

    def stop_reason(self) -> str | None:
        """The library's all-time budget reached: every run of it stops."""
        cap = self.limits.max_cost_usd if self.limits else None
        if cap is None:
            return None
        spent = self.spent()
        return f"library budget reached (${spent:.4f} of ${cap:g})" if spent >= cap else None

    def spent(self) -> float:
        return sum(m.loop.ledger.cost for m in self.members.values())

    def spent_today(self) -> float:
        return sum(m.loop.ledger.cost - m.day_base for m in self.members.values())

    def dispatch(self, look: bool = False) -> None:
        """Give free slots to the waiting runs that deserve them; note why the rest wait.
        `look`: see whether resting runs' files changed (once a second, not every round)."""
        waiting = [m for m in self.members.values()
                   if m.waiter is not None and not m.waiter.done()]
        if not waiting:
            return
        limits = self.limits
        if limits is None:  # no caps, no rests: everyone goes
            for m in waiting:
                m.waiter.set_result(True)
            return
        now = time.time()
        if limits.daily_cost_usd is not None and (
                today := self.spent_today()) >= limits.daily_cost_usd:
            why = f"waiting: library budget (${today:.4f} of ${limits.daily_cost_usd:g} today)"
            for m in waiting:
                self.reasons[m.arm.run_id] = why
            return
        ready = []
        for m in waiting:
            arm = m.arm
            if arm.resting_since is not None and not self.policy.ready(
                    arm, now, changed=look and self._mark(m.loop) != arm.mark):
                self.reasons[arm.run_id] = (
                    f"resting: plateau since {clock(arm.resting_since)}, until "
                    f"{clock(self.policy.rest_until(arm))} or its file changes")
                continue
            if m.loop.paused:
                continue
            ready.append(m)
        busy = sum(1 for m in self.members.values() if m.holding and not m.loop.paused)
        free = len(ready) if limits.max_parallel is None else limits.max_parallel - busy
        by_arm = {id(m.arm): m for m in ready}
        arms = [m.arm for m in ready]
        while free > 0 and arms:
            arm = self.policy.pick(arms)
            arms.remove(arm)
            m = by_arm[id(arm)]
            m.waiter.set_result(True)
            self.reasons[arm.run_id] = None
            free -= 1
        for arm in arms:
            self.reasons[arm.run_id] = f"waiting: max_parallel ({limits.max_parallel} busy)"

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
            await asyncio.sleep(TICK_S)
            try:
                midnight = _midnight(time.time())
                if midnight != self.today:  # a new day: its budget starts from nothing
                    self.today = midnight
                    for m in self.members.values():
                        m.day_base = m.loop.ledger.cost
                for m in self.members.values():
                    if (m.waiter is not None and not m.waiter.done()
                            and (m.loop.stopping or m.loop.check_stop(mid_wave=True))):
                        m.waiter.set_result(False)  # its own stop rules: let it see them
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
            sched = self.by_key[key] = LibraryScheduler(self.store, spec.library)
        sched.join(loop)
        self.of_run[loop.run_id] = sched
        loop.ctx.turn = lambda: sched.turn(loop)
        loop.ctx.library_stop = sched.stop_reason

    def leave(self, loop: Any) -> None:
        sched = self.of_run.pop(loop.run_id, None)
        if sched is not None:
            sched.leave(loop)

    def wake(self, loop: Any) -> None:
        sched = self.of_run.get(loop.run_id)
        if sched is not None:
            sched.wake(loop)
