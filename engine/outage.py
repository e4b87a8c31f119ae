"""When a model call fails for a reason that is not the candidate's: the run pauses, says so
(an error event, the run's stop_reason the app shows, and `alert`, which headless output
prints), and — for an outage — resumes by itself on a schedule that backs off up to a cap, so
an overnight run outlives an hour without the API.

An outage is never a verdict on an idea: a mutator call that fails records no experiment,
and an evaluation it cuts short is recorded `interrupted` (not a failure for `max_failures`,
and not shown to the mutator as a bad idea). A refused key or model, and evidence too broken
to score (engine/evaluators/evidence.py), pause until a person resumes the run.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING

from engine.llm import LLMUnavailable
from engine.model import INTERRUPTED, Evaluation, Usage

if TYPE_CHECKING:
    from engine.context import RunContext as RunLoop  # (the loop's shared pieces)

#: First wait before the API is tried again after an outage, and the longest wait.
OUTAGE_FIRST_S, OUTAGE_MAX_S = 30.0, 600.0
#: An outage this long after the last automatic resume starts the backoff afresh.
RESET_AFTER_S = 900.0
#: How often a scheduled resume looks whether the run was stopped meanwhile.
TICK_S = 0.25


class Outages:
    """One run's outage state: how many in a row, and the scheduled resume."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = weakref.proxy(loop)
        self.tries = 0
        self.resumed_at = 0.0
        self.task: asyncio.Task[None] | None = None

    def next_wait(self, exc: LLMUnavailable) -> float:
        settings = exc.settings
        first = getattr(settings, "outage_retry_s", None) or OUTAGE_FIRST_S
        cap = max(first, getattr(settings, "outage_retry_max_s", None) or OUTAGE_MAX_S)
        if self.resumed_at and time.monotonic() - self.resumed_at > RESET_AFTER_S:
            self.tries = 0
        self.tries += 1
        return min(cap, first * 2 ** (self.tries - 1))

    def schedule(self, wait: float, paused_at: float) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = asyncio.get_running_loop().create_task(self._resume(wait, paused_at))

    async def _resume(self, wait: float, paused_at: float) -> None:
        loop = self.loop
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if loop.stopping or not loop.paused:  # stopped, or resumed by a person
                return
            await asyncio.sleep(min(TICK_S, max(0.0, deadline - time.monotonic())))
        if loop.stopping or not loop.paused or _paused_by_person(loop, paused_at):
            return
        self.resumed_at = time.monotonic()
        loop.paused = False
        loop.alert = None
        loop.store.update_run(loop.run_id, status="running", stop_reason=None)
        loop.log(f"trying the API again after the outage (try {self.tries + 1})",
                 level="warning")
        loop.wake()
        loop.notify()


_STATE: weakref.WeakKeyDictionary[RunLoop, Outages] = weakref.WeakKeyDictionary()


def outages(loop: RunLoop) -> Outages:
    state = _STATE.get(loop)
    if state is None:
        state = _STATE[loop] = Outages(loop)
    return state


def _paused_by_person(loop: RunLoop, since: float) -> bool:
    return any(c["verb"] == "pause" and (c["created"] or 0) >= since
               for c in loop.store.commands(loop.run_id, limit=10))


def on_model_trouble(loop: RunLoop, exc: LLMUnavailable) -> None:
    """Pause the run with the cause; schedule a resume when it is an outage."""
    text = str(exc).removeprefix("paused: ")
    if exc.kind == "outage":
        state = outages(loop)
        if loop.paused and state.task is not None and not state.task.done():
            return  # a sibling of this wave saw the same outage: one pause, one schedule
        wait = state.next_wait(exc)
        message = f"API outage: {text}; trying again in {wait:g}s"  # (0.5 s is not "0s")
        paused_at = time.time()
        loop.pause_for_error(message)
        loop.alert = f"paused: {message}"
        state.schedule(wait, paused_at)
    else:
        loop.pause_for_error(f"{text} (resume the run once it is fixed)")
        loop.alert = f"paused: {text}"
    loop.notify()


def interrupted_evaluation(loop: RunLoop, exc: LLMUnavailable) -> Evaluation:
    """What an evaluation cut short by model trouble becomes (and the run pauses)."""
    on_model_trouble(loop, exc)
    broken = getattr(exc, "evaluation", None)
    if isinstance(broken, Evaluation):  # unusable evidence: a crash with its cause and items
        return broken
    return Evaluation(INTERRUPTED, error=f"not scored: {exc}", usage=exc.usage or Usage())
