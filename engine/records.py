"""Records that wait for the next evaluation to start, and are written while it runs.

A reverted candidate's record (its outcome, decision details and event lines) need not hold
up the next round: it waits in memory until the next evaluation has been started, and is
written at that evaluation's first pause, in one transaction with the new candidate's row
(inserted, so it has its id, but not yet committed). When evaluations take milliseconds the
commit waits too: it comes at the first pause at least COMMIT_EVERY_S after the last one, so
a few rounds share it (a commit writes every changed page to the log, and their rows share
pages; the run's counters, being totals, are written once a commit). Slower evaluations
commit at every pause, as before. On a fast evaluation this takes SQLite off the path from
one evaluation to the next (bench/engine_overhead.py).

Log before reset still holds: a candidate's files go into the store at its evaluation's
first pause (its row, with its diff, before it starts), and nothing that held a reverted
candidate is reset before its record is written (the target files never held it; its slot
folder is scratch space, reused two evaluations later). A kept candidate is committed at
once, before it becomes the best version. Whatever reads or changes older experiments
(steering, stop rules, retests, re-evaluations, a stop, a pause) writes and commits the
waiting records first, and nothing waits longer than MAX_WAIT_S. A crash can lose what was
not committed (the last few rounds of a fast run), as it can lose an outcome whose
evaluation has just ended; resuming marks those experiments interrupted.

The runs of one host share the connection, and so the open transaction: their records
are one batch (`_Batch`). A commit, whichever run's pause it comes at, completes every run's
started rows and writes every run's counters first, and is the batch's: at library size
(hundreds of runs, each round a few hundred milliseconds apart) the commits are shared as
a fast run's rounds share them, instead of one a round. Other writes on the connection (the
host's) may commit the open transaction early (harmless) or, failing, roll it back. Each
write checks for that, cheaply (the connection's change count, which only the batch's own
statements are expected to move), and puts back what a rollback lost, for every run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.model import RUNNING
from engine.store import Store

#: Longest a record waits to be committed (e.g. while a model proposes slowly).
MAX_WAIT_S = 0.05
#: Fewest seconds between two commits at evaluations' first pauses.
COMMIT_EVERY_S = 0.01


def once_started(callback: Callable[..., object], *args: Any) -> None:
    """Run `callback` once the evaluation about to start has started: a local command's
    process starts in this step, before its first await (engine/workers/process.py), so
    callbacks queued now run after it, while the process runs, not between one evaluation
    and the next (they were, for a while: 0.6 ms of a millisecond round)."""
    asyncio.get_running_loop().call_soon(callback, *args)


class _Batch:
    """The records of every run writing on one store's connection."""

    def __init__(self) -> None:
        #: The runs with rows or outcomes in the open transaction, or counters to write.
        self.pending: set[WaitingRecords] = set()
        #: The connection's change count after the batch's last statement.
        self.changes = -1
        self.last_commit = 0.0
        #: Writes that wait for the batch's next commit and go in with it, or for their own
        #: timer (worker rows): in order, once each.
        self.riders: dict[Callable[[], object], None] = {}


_batches: weakref.WeakKeyDictionary[Store, _Batch] = weakref.WeakKeyDictionary()


def _batch_of(store: Store) -> _Batch:
    batch = _batches.get(store)
    if batch is None:
        batch = _batches[store] = _Batch()
    return batch


@dataclass
class _Started:
    """An experiment row inserted in the open transaction."""

    insert_again: Callable[[], object]
    complete: Callable[[], object] | None
    completed: bool = False


class WaitingRecords:
    """finish_experiment calls that wait for a quiet moment, oldest first."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        #: Outcomes decided but not yet written.
        self.waiting: list[tuple[int, dict[str, Any]]] = []
        #: Rows inserted since the last commit, with how to insert them again should a
        #: rollback lose them and what completes them (e.g. the diff) before the commit.
        self.open: dict[int, _Started] = {}
        #: Outcomes written since the last commit (to write again should a rollback lose them).
        self._written: dict[int, dict[str, Any]] = {}
        #: The run's newest counters not yet written (they go in with the commit).
        self._run_state: dict[str, Any] = {}
        #: Rows start() inserted whose outcome is not written yet (Store.finish_experiment's
        #: `fresh`: nothing else writes to them meanwhile).
        self._fresh: set[int] = set()
        #: Shared with the other runs on this connection (their open transaction is ours).
        self._batch = _batch_of(store)
        self._timer: asyncio.TimerHandle | None = None
        #: Told of a write that failed in a callback or in add() (engine/storage.py).
        self.on_trouble: Callable[[BaseException], None] = lambda exc: None

    def start(self, insert: Callable[[int | None], int],
              complete: Callable[[], object] | None = None) -> int:
        """Insert an experiment's row in the open transaction (`insert(None)` returns its id;
        `insert(id)` puts it back after a rollback); `complete` runs before the commit."""
        batch = self._batch
        self._ensure_intact()  # first, or the new row could take a lost row's id
        exp_id = insert(None)
        self.open[exp_id] = _Started(lambda: insert(exp_id), complete)
        batch.pending.add(self)
        self._fresh.add(exp_id)
        batch.changes = self.store.total_changes()  # (what moved it is in the batch now)
        self._arm()
        return exp_id

    def add(self, exp_id: int, fields: dict[str, Any]) -> None:
        """Queue a record; write() or the timer writes it (or another run's commit)."""
        self.waiting.append((exp_id, fields))
        self._batch.pending.add(self)
        if len(self.waiting) > 1:  # an earlier one failed to write: retry now
            self.write_quietly()
        else:
            self._arm()

    def write(self, commit: bool = True) -> None:
        """Write every waiting record now, oldest first, and commit; with commit=False the
        commit waits for COMMIT_EVERY_S since the last one. A storage error propagates (the
        run pauses for it) and leaves what was not committed to be written again."""
        batch = self._batch
        self._ensure_intact()
        self._complete()
        due = commit or time.monotonic() - batch.last_commit >= COMMIT_EVERY_S
        self._write_waiting(due)
        if due:
            self._write_counters()
            members = [m for m in batch.pending if m is not self]
            for member in members:  # the others' part of the commit, made whole
                member._write_waiting(True)
                member._complete()
                member._write_counters()
            riders, batch.riders = batch.riders, {}
            for ride in riders:
                ride()
            if self.store.in_transaction():
                self.store.commit()
                self.store.keep_log_bounded()
            for member in [self, *members]:
                member.open.clear()
                member._written.clear()
                member._disarm()
            batch.pending.clear()
            batch.last_commit = time.monotonic()
        else:
            batch.pending.add(self)
            self._arm()
        batch.changes = self.store.total_changes()

    def write_quietly(self, commit: bool = True) -> None:
        """write() from a callback, which has no caller to report to: a failure stays waiting
        (to be written again) and goes to `on_trouble`, which pauses the run."""
        try:
            self.write(commit)
        except (sqlite3.Error, OSError) as exc:
            self.on_trouble(exc)

    def write_once_started(self) -> None:
        """Called just before an evaluation starts: write at its first pause (for a local
        command, once the process is running: see `once_started`)."""
        if self.waiting or self.open:
            once_started(self.write_quietly, False)

    def ride(self, write: Callable[[], object]) -> None:
        """`write` (statements that do not commit) goes in with the batch's next commit, if
        one comes before the writer's own timer: a write of its own is a commit (and, on
        its own timer, a wake) more a round (tests/test_wakes.py counts them)."""
        self._batch.riders[write] = None

    def decided(self) -> list[tuple[int, str]]:
        """(experiment, verdict) of the waiting records, oldest first."""
        return [(exp_id, fields["verdict"]) for exp_id, fields in self.waiting]

    # ------------------------------------------------------------ internals

    def _ensure_intact(self) -> None:
        """Everything the batch wrote since the last commit, back in the open transaction:
        when something else wrote on the connection since (its change count moved), what a
        rollback lost is put back, for every run of the batch."""
        batch = self._batch
        if batch.pending and not (self.store.in_transaction()
                                  and self.store.total_changes() == batch.changes):
            for member in list(batch.pending):
                member._put_back()

    def _complete(self) -> None:
        """What completes the started rows (their files), before they are committed."""
        for started in self.open.values():
            if not started.completed and started.complete is not None:
                started.complete()
            started.completed = True

    def _write_waiting(self, due: bool) -> None:
        """The waiting outcomes, oldest first, into the open transaction; with `due` (a
        commit comes) the run's newest counters with the last of them."""
        while self.waiting:
            exp_id, fields = self.waiting[0]
            # The run's counters are totals: only the newest before a commit is written.
            self._run_state.update(fields.get("run_update") or {})
            run_update = self._run_state if due and len(self.waiting) == 1 else None
            self.store.finish_experiment(exp_id, commit=False, fresh=exp_id in self._fresh,
                                         **{**fields, "run_update": run_update})
            if run_update is not None:
                self._run_state = {}
            self._written[exp_id] = fields
            self._fresh.discard(exp_id)
            self.waiting.pop(0)

    def _write_counters(self) -> None:
        """The run's newest counters, into the open transaction (a commit comes)."""
        if self._run_state:
            self.store.set_run_fields(self.run_id, self._run_state)
            self._run_state = {}

    def _put_back(self) -> None:
        """Another write on the connection committed the open transaction (then these rows
        are there) or rolled it back: insert lost rows again, queue lost outcomes again."""
        for exp_id, started in self.open.items():
            if not self.store.has_experiment(exp_id, self.run_id):
                started.insert_again()
            started.completed = False  # completing again is harmless; a lost one is not
        lost = [(exp_id, fields) for exp_id, fields in self._written.items()
                if (self.store.experiment(exp_id) or {}).get("verdict") == RUNNING]
        # (their rows hold nothing of a finish now: written again, they are fresh again)
        self._fresh.update(exp_id for exp_id, _ in lost if exp_id in self.open)
        self.waiting[:0] = lost
        self._written.clear()
        if lost:  # (put back from another run's write: written within MAX_WAIT_S still)
            self._arm()

    def _arm(self) -> None:
        """Make sure a write comes within MAX_WAIT_S."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(MAX_WAIT_S, self._time_is_up)

    def _disarm(self) -> None:
        """Committed, nothing waits: no timer. One left to run out would wake an idle
        process once a round for nothing (a wake costs more CPU than cancelling and making
        a timer: a tenth to a quarter of a millisecond on these machines)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_is_up(self) -> None:
        self._timer = None
        if self.waiting or self.open:
            self.write_quietly()
