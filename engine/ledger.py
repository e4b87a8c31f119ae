"""The run's record keeping: event lines, experiment outcomes, and the run row's counters.

Everything the loop writes about a run goes through one `Ledger`: lines are buffered and
written in batches, a reverted candidate's outcome waits for the next evaluation's first
pause (engine/records.py), a keep's is written at once (log before reset, invariant 2), and
the counters (rounds, cost, elapsed) are kept in memory and written with the outcomes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from engine.model import Usage
from engine.records import WaitingRecords
from engine.storage import storage_trouble  # noqa: F401 - (one test of it, re-exported)
from engine.store import Store

#: Event lines buffered before they are written in one transaction.
EVENT_BATCH = 200
MAX_PENDING_EVENTS = 5_000

Event = tuple[int | None, int | None, str, str, str]


class Ledger:
    """One run's writes to the store, and the counters that go with them."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        #: Outcomes waiting for a quiet moment (engine/records.py).
        self.records = WaitingRecords(store, run_id)
        #: Event lines not yet written.
        self.events: list[Event] = []
        #: The highest round number started.
        self.max_round = 0
        #: USD spent by this run (the run row's cost_usd).
        self.cost = 0.0
        self._started = time.monotonic()
        self._elapsed_before = 0.0
        #: Told of a write that failed where nobody can be told (engine/storage.py's trip).
        self.trouble: Callable[[BaseException], None] | None = None

    # ------------------------------------------------------------ events

    def log(self, line: str, *, level: str = "info", source: str = "engine",
            exp_id: int | None = None) -> None:
        self.events.append((self.run_id, exp_id, level, source, line))
        if len(self.events) >= EVENT_BATCH:
            try:
                self.flush_events()
            except (sqlite3.Error, OSError) as exc:
                if self.trouble is None:
                    raise
                self.trouble(exc)

    def flush_events(self) -> None:
        self.records.write_quietly()  # their event lines come first
        if self.events:
            # Keep the lines if the write fails (full disk), but never more than a bounded few.
            self.events = self.events[-MAX_PENDING_EVENTS:]
            self.store.add_events(self.events)
            self.events = []

    def unwritten(self) -> bool:
        """Event lines waiting to be written: the host's poller flushes only those runs (a
        library hosts hundreds, most with no line waiting at any moment; the records have
        a timer of their own, engine/records.py)."""
        return bool(self.events)

    def take_events(self) -> list[Event]:
        """The lines not yet written, to go in one transaction with an outcome."""
        events, self.events = self.events[-MAX_PENDING_EVENTS:], []
        return events

    # ------------------------------------------------------------ counters

    def resume(self, run: dict[str, Any]) -> None:
        """Counters as the store has them, after any stop."""
        self._elapsed_before = run["elapsed"] or 0.0
        self._started = time.monotonic()
        self.cost = run["cost_usd"] or 0.0
        self.max_round = self.store.last_round(self.run_id)

    def elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started

    def round_started(self, round_no: int) -> None:
        self.max_round = max(self.max_round, round_no)

    def totals(self, usage: Usage) -> dict[str, Any]:
        """The run row's counters after one more experiment (kept in memory, written with it)."""
        self.cost += usage.cost_usd
        return {"rounds": self.max_round, "cost_usd": self.cost,
                "heartbeat": time.time(), "elapsed": self.elapsed()}

    # ------------------------------------------------------------ outcomes

    def outcome(self, exp_id: int, fields: dict[str, Any], *, now: bool) -> None:
        """An experiment's outcome with the pending event lines, in one transaction; written
        at once (`now`: e.g. a keep, which becomes the best version next) or while the next
        evaluation runs."""
        self.records.add(exp_id, {**fields, "events": self.take_events()})
        if now:
            self.records.write()
