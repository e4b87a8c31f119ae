"""Records that wait for the next evaluation to start, and are written while it runs.

A reverted candidate's record (its outcome, decision details and event lines) need not hold
up the next round: it waits in memory until the next evaluation has been started, and is
written while that one runs, in one commit with the new candidate's row (inserted, so it has
its id, but not yet committed). On a fast evaluation this takes SQLite's commits off the
path from one evaluation to the next (bench/engine_overhead.py).

Log before reset still holds: a reverted candidate's files are in the store from the moment
it started, and nothing that held it is reset before its record is written (the target
files never held it; its slot folder is scratch space). A kept candidate is written at once,
before it becomes the best version. Whatever reads or changes older experiments (steering,
stop rules, retests, re-evaluations, a stop, a pause) writes the waiting records first, and
none waits longer than MAX_WAIT_S. A crash can lose an outcome not yet written, as it can
lose one whose evaluation has just ended; resuming marks that experiment interrupted.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

from engine.store import Store

#: Longest a record waits for the next evaluation to start (e.g. a model proposing slowly).
MAX_WAIT_S = 0.05


class WaitingRecords:
    """finish_experiment calls that wait for a quiet moment, oldest first."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self.waiting: list[tuple[int, dict[str, Any]]] = []
        #: Experiments inserted in a transaction not yet committed, with how to insert them
        #: again should another write's failure roll that transaction back.
        self.uncommitted: list[tuple[int, Callable[[], object]]] = []
        #: What completes those rows before the commit (e.g. the diff).
        self._completions: list[Callable[[], object]] = []
        self._timer: asyncio.TimerHandle | None = None

    def started(self, exp_id: int, insert_again: Callable[[], object],
                complete: Callable[[], object] | None = None) -> None:
        """An experiment row was inserted with commit=False: `complete` it and commit soon."""
        self.uncommitted.append((exp_id, insert_again))
        if complete is not None:
            self._completions.append(complete)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(MAX_WAIT_S, self.write_quietly)

    def add(self, exp_id: int, fields: dict[str, Any]) -> None:
        """Queue a record; write() or the timer writes it."""
        self.waiting.append((exp_id, fields))
        if len(self.waiting) > 1:  # an earlier one failed to write: retry where errors surface
            self.write()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(MAX_WAIT_S, self.write_quietly)

    def write(self) -> None:
        """Write every waiting record now, oldest first. A storage error propagates (the
        run pauses for it) and leaves the unwritten ones waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Another write on this connection (another run's, the host's) may have committed
        # their transaction or, failing, rolled it back; an open transaction now may be a
        # newer one, so each row is looked up (one indexed read, off the hot path).
        for exp_id, insert_again in self.uncommitted:
            if not self.store.has_experiment(exp_id, self.run_id):
                insert_again()
        while self._completions:
            self._completions[0]()
            self._completions.pop(0)
        while self.waiting:  # the first one commits the inserted rows with it
            exp_id, fields = self.waiting[0]
            self.store.finish_experiment(exp_id, **fields)
            self.waiting.pop(0)
        if self.store.in_transaction():
            self.store.commit()
        self.uncommitted.clear()

    def write_quietly(self) -> None:
        """write() from a callback, which has no caller to report to: a failure stays waiting
        for the next write() on the loop's own path."""
        try:
            self.write()
        except (sqlite3.Error, OSError):
            pass

    def write_once_started(self) -> None:
        """Called just before an evaluation starts: write at its first pause (for a local
        command, once the process is running)."""
        if self.waiting or self.uncommitted:
            asyncio.get_running_loop().call_soon(self.write_quietly)

    def outcome(self, exp_id: int) -> dict[str, Any] | None:
        """The waiting record of this experiment, if it is still waiting."""
        return next((fields for e, fields in self.waiting if e == exp_id), None)
