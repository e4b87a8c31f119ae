"""Periodic work on one beat, so that the engine's timers wake the process together.

A process's wake from sleep costs a tenth to a quarter of a millisecond of CPU on the
machines we run on (the kernel's part and the event loop's), more than most periodic work
itself: the command poller's check is a single lookup. Each periodic task sleeping its own
period from whenever it last ran wakes the process on its own; an idle host of one run woke
about eight times a second; with steering rung for instead (engine/bell.py), the two
together took a sixth off the engine's CPU per round at one run of 200 ms rounds
(bench/library.py, interleaved with the code before).

So periodic tasks sleep to the next multiple of their period on the event loop's clock, and
every period is a multiple of BEAT_S: at any moment, the tasks that are due are due at the
same instant, and one wake serves them all (asyncio runs every timer that is due together).
"""

from __future__ import annotations

import asyncio

#: The shortest period, and what every period is a multiple of.
BEAT_S = 0.2
#: A timer may run this early (asyncio's clock resolution): the next beat is not that one.
_EARLY_S = 1e-3


def until_beat(period: float = BEAT_S, now: float | None = None) -> float:
    """Seconds from now to the next multiple of `period` on the loop's clock."""
    if now is None:
        now = asyncio.get_running_loop().time()
    left = period - now % period
    return left + period if left < _EARLY_S else left


async def beat(period: float = BEAT_S) -> None:
    """Sleep until the next multiple of `period` (a multiple of BEAT_S)."""
    await asyncio.sleep(until_beat(period))
