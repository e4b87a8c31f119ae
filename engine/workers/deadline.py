"""`with within(seconds):` as `async with asyncio.timeout(seconds):`, for a command's timeout.

asyncio.timeout makes a timer handle per use and cancels it when the block ends; cancelled
handles stay in the loop's heap until they fall due, and every push into it compares them
in Python. For a command that takes a millisecond that was a thirtieth of the engine's
interpreter work a round (bench/engine_overhead.py). Here each loop has one timer, set for
the earliest deadline; entering a block is a dict entry, leaving it removes the entry, and
the timer is only moved when a deadline comes sooner than the one it is set for.

Expiry cancels the task running the block, which sees TimeoutError, as with asyncio.timeout;
a cancellation from elsewhere meanwhile stays a cancellation.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from types import TracebackType

#: A timer may run this early (the loop's clock resolution): a deadline this near is due.
EARLY_S = 1e-3


class _Deadlines:
    """One loop's open blocks by deadline, behind one timer."""

    def __init__(self) -> None:
        # (no reference to the loop: it is this object's key in a weak mapping)
        self.due: dict[within, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf

    def add(self, loop: asyncio.AbstractEventLoop, block: within, when: float) -> None:
        self.due[block] = when
        if when < self._at:
            if self._timer is not None:
                self._timer.cancel()
            self._at, self._timer = when, loop.call_at(when, self._fire)

    def remove(self, block: within) -> None:
        """The block ended (the timer stays where it is: it finds nothing due)."""
        self.due.pop(block, None)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer, self._at = None, math.inf
        now = loop.time() + EARLY_S
        for block in [b for b, when in self.due.items() if when <= now]:
            del self.due[block]
            block.expire()
        if self.due:
            when = min(self.due.values())
            self._at, self._timer = when, loop.call_at(when, self._fire)


_of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary())


class within:  # noqa: N801 - used like asyncio.timeout, a function's name
    """A block of code given `seconds` of the running task's time (None: no limit)."""

    __slots__ = ("seconds", "_task", "_deadlines", "_cancelling", "_expired")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._expired = False

    def __enter__(self) -> within:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("within() is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        if self.seconds is not None:
            loop = task.get_loop()
            deadlines = _of_loop.get(loop)
            if deadlines is None:
                deadlines = _of_loop[loop] = _Deadlines()
            self._deadlines = deadlines
            deadlines.add(loop, self, loop.time() + max(self.seconds, 0.0))
        return self

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.seconds is not None:
            self._deadlines.remove(self)
        if (self._expired and exc_type is asyncio.CancelledError
                and self._task.uncancel() <= self._cancelling):
            raise TimeoutError from exc
