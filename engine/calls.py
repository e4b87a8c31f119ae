"""Every model call is journaled in the store as it happens, so that a SIGKILL cannot lose
what a call cost: the run's total equals the sum over its experiments equals what the API
billed, under kills too (issue 13).

One row of `calls` goes through these states:

    pending    inserted and committed before the request is sent, with `estimate_usd`, an
               upper bound of what it can cost: every byte of the request counted as a token
               at the dearest input price (a 1-hour cache write), plus FRAMING_TOKENS for the
               API's own framing, plus `max_tokens` of output
    done       the reply arrived: its real usage, committed before anything else is done
               with the reply (engine/llm.py)
    failed     nothing billable came back: an error status, an unreadable reply, an outage,
               or a stop that cancelled the request (the server sees the client go away)
    estimated  a pending row a killed engine left behind: counted at its estimate. The API
               may have billed the call (the reply was on its way) or not (still thinking);
               it cannot have billed more, so a total that holds estimates is an upper bound

`accounted` says that the row's cost is in an experiment's `cost_usd`: the store sets it
in the transaction that records the experiment's usage (a Usage carries the ids of the
calls it adds up). On resume `recover` finds the rows not accounted for — the calls of an
experiment a kill cut short, a reply that came in after its experiment was recorded — and
gives each to its experiment: those in flight become `interrupted` with them, one already
recorded gets them added. Calls of no experiment (a mutator's proposal: its candidate's row
did not exist yet) go to one interrupted row of their own. The run's total grows by the
same amount, so it stays the sum over its experiments. `status` and the exports say how much
of a cost is estimated.

The table is made by engine/schema.py's m010_calls; its SQL lives here rather than in the
already long engine/store.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from engine.model import INTERRUPTED, Usage

if TYPE_CHECKING:
    from engine.store import Store

#: Tokens the API adds around a request (tool-use instructions, message framing), on top of
#: the request's own bytes, in the estimate of a call in flight.
FRAMING_TOKENS = 1024
#: The price keys a prompt token can be billed at.
INPUT_PRICES = ("input", "cache_write", "cache_write_1h", "cache_read")

_JOURNAL: ContextVar[Journal | None] = ContextVar("call_journal", default=None)


def estimate_usd(request: dict[str, Any], prices: dict[str, float], max_tokens: int) -> float:
    """An upper bound of what a request can cost (see the module doc)."""
    size = len(json.dumps(request, ensure_ascii=False, default=str).encode("utf-8",
                                                                           "surrogatepass"))
    dearest = max(prices.get(k, 0.0) for k in INPUT_PRICES)
    return ((size + FRAMING_TOKENS) * dearest + max_tokens * prices.get("output", 0.0)) / 1e6


class Journal:
    """One run's journal of model calls, on the engine's connection (the one writer).

    A write commits at once (what a kill must not lose); it may commit the waiting records'
    open transaction with it, which they allow (engine/records.py). A write that fails (a
    full disk) goes to `trouble`, which pauses the run; an update is kept and written again
    with the next one, so a finished call is never left looking like one in flight."""

    def __init__(self, store: Store, run_id: int,
                 trouble: Callable[[BaseException], None] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.trouble = trouble
        #: Updates a failed write left, oldest first.
        self._unwritten: list[tuple[str, list[Any]]] = []

    def begin(self, role: str, model: str, estimate: float,
              experiment: int | None) -> int | None:
        """A pending row for a call about to be sent; None if it cannot be written."""
        sql = ("INSERT INTO calls (run_id, experiment_id, role, model, state, started, "
               "estimate_usd) VALUES (?, ?, ?, ?, 'pending', ?, ?)")
        return self._write([(sql, [self.run_id, experiment, role, model, time.time(),
                                   estimate])])

    def done(self, call: int | None, usage: Usage) -> None:
        """The reply's real usage (and the call's id on the usage, for its experiment)."""
        if call is None:
            return
        usage.calls.append(call)
        self._queue("UPDATE calls SET state = 'done', finished = ?, tokens_in = ?, "
                    "tokens_out = ?, tokens_cache_write = ?, tokens_cache_read = ?, "
                    "cost_usd = ? WHERE id = ?",
                    [time.time(), usage.tokens_in, usage.tokens_out, usage.tokens_cache_write,
                     usage.tokens_cache_read, usage.cost_usd, call])

    def failed(self, call: int | None) -> None:
        """Nothing billable came back: nothing to count."""
        if call is not None:
            self._queue("UPDATE calls SET state = 'failed', finished = ?, accounted = 1 "
                        "WHERE id = ? AND state = 'pending'", [time.time(), call])

    def _queue(self, sql: str, params: list[Any]) -> None:
        self._unwritten.append((sql, params))
        self._write([])

    def _write(self, statements: list[tuple[str, list[Any]]]) -> int | None:
        conn = self.store.conn
        try:
            new_id = None
            for sql, params in [*self._unwritten, *statements]:
                new_id = conn.execute(sql, params).lastrowid
            conn.commit()
        except (sqlite3.Error, OSError) as exc:
            # Nothing half-written may be committed later: a pending row nobody will finish
            # would be counted again on resume. (The waiting records put back what this
            # rollback takes of theirs, engine/records.py.)
            if conn.in_transaction:
                conn.rollback()
            if self.trouble is None:
                raise
            self.trouble(exc)
            return None
        self._unwritten.clear()
        return new_id if statements else None


def bind(journal: Journal) -> None:
    """Journal the model calls of the current task (a run's) and of the tasks it starts."""
    _JOURNAL.set(journal)


def current() -> Journal | None:
    return _JOURNAL.get()


def link(conn: sqlite3.Connection, exp_id: int, usage: Any, *, counted: bool = True) -> None:
    """In the caller's transaction: the calls `usage` adds up are counted in `exp_id`'s cost
    (`counted`), or (not yet) belong to it: a candidate's row, started with its mutation."""
    calls = getattr(usage, "calls", None)
    if calls:
        conn.executemany("UPDATE calls SET experiment_id = ?, accounted = MAX(accounted, ?) "
                         "WHERE id = ?", [(exp_id, int(counted), c) for c in calls])


def estimated_usd(store: Store, run_id: int) -> float:
    """How much of a run's cost is estimated (calls a killed engine left in flight)."""
    try:
        row = store.conn.execute("SELECT SUM(cost_usd) FROM calls WHERE run_id = ? AND "
                                 "state = 'estimated'", [run_id]).fetchone()
    except sqlite3.OperationalError:  # a store opened read-only before its migration
        return 0.0
    return float(row[0] or 0.0)


def estimated_by_experiment(store: Store, run_id: int) -> dict[int, float]:
    """The estimated part of each experiment's cost, where it has one."""
    try:
        rows = store.conn.execute(
            "SELECT experiment_id, SUM(cost_usd) FROM calls WHERE run_id = ? AND "
            "state = 'estimated' GROUP BY experiment_id", [run_id]).fetchall()
    except sqlite3.OperationalError:
        return {}
    return {e: float(c or 0.0) for e, c in rows if e is not None}


def estimated_note(store: Store, run_id: int) -> str:
    """` ($0.0123 of it estimated: ...)` after a run's cost, or nothing."""
    part = estimated_usd(store, run_id)
    return (f" (${part:.4f} of it estimated: model calls a killed engine left in flight, "
            "counted at their upper bound)" if part else "")


def _usage(rows: list[sqlite3.Row | tuple[Any, ...]]) -> Usage:
    total = Usage()
    for call, _exp, t_in, t_out, t_write, t_read, cost in rows:
        total.add(Usage(t_in, t_out, t_write, t_read, cost))
        total.calls.append(call)
    return total


def recover(store: Store, run_id: int, totals: Callable[[Usage], dict[str, Any]],
            in_flight: list[dict[str, Any]], reason: str) -> None:
    """After any stop: the experiments left running become interrupted with what their
    calls cost, and every call not yet counted is counted (see the module doc). `totals`
    is the ledger's (the run's counters after one more experiment's usage)."""
    conn = store.conn
    with conn:  # a pending row of this run is a dead engine's: only one engine runs it
        conn.execute("UPDATE calls SET state = 'estimated', cost_usd = estimate_usd, "
                     "finished = ? WHERE run_id = ? AND accounted = 0 AND state = 'pending'",
                     [time.time(), run_id])
        # (counted by its experiment already, though its own numbers never got written)
        conn.execute("UPDATE calls SET state = 'done' WHERE run_id = ? AND accounted = 1 "
                     "AND state = 'pending'", [run_id])
    rows = conn.execute("SELECT id, experiment_id, tokens_in, tokens_out, tokens_cache_write, "
                        "tokens_cache_read, cost_usd FROM calls WHERE run_id = ? AND "
                        "accounted = 0 ORDER BY id", [run_id]).fetchall()
    by_exp: dict[int | None, list[Any]] = {}
    for row in rows:
        by_exp.setdefault(row[1], []).append(row)
    for exp in in_flight:
        spent = _usage(by_exp.pop(exp["id"], []))
        store.finish_experiment(exp["id"], verdict=INTERRUPTED, reason=reason, usage=spent,
                                run_update=totals(spent))
    orphans = by_exp.pop(None, [])
    for exp_id, calls in by_exp.items():
        spent = _usage(calls)
        if not store.has_experiment(exp_id, run_id):  # (its row was never committed)
            orphans += calls
            continue
        with conn:  # a reply that came in after its experiment was recorded
            conn.execute("UPDATE experiments SET tokens_in = tokens_in + ?, tokens_out = "
                         "tokens_out + ?, tokens_cache_write = tokens_cache_write + ?, "
                         "tokens_cache_read = tokens_cache_read + ?, cost_usd = cost_usd + ? "
                         "WHERE id = ?", [spent.tokens_in, spent.tokens_out,
                                          spent.tokens_cache_write, spent.tokens_cache_read,
                                          spent.cost_usd, exp_id])
            link(conn, exp_id, spent)
            store.set_run_fields(run_id, totals(spent))
    if orphans:
        spent = _usage(orphans)
        run = store.get_run(run_id) or {}
        exp_id = store.start_experiment(
            run_id, round=store.last_round(run_id), kind="candidate",
            parent=run.get("best_experiment"), description="(the mutator was proposing)")
        store.finish_experiment(
            exp_id, verdict=INTERRUPTED, usage=spent, run_update=totals(spent),
            reason=f"the engine stopped while a model call of no experiment yet was in "
                   f"flight; its {len(orphans)} call(s) are counted here")
