"""What a person watching a run needs between two verdicts: which evaluations are running,
for how long, and the last line each printed; and which steering commands were applied.

Both read the store only (worker output reaches it as events, flushed by the host's poller
within COMMAND_POLL_S, a second), so the headless printer and an attached app can use them alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from engine.store import Store
from engine.text import printable

#: Sources of events that are the engine's own lines, not an evaluation's output.
ENGINE_SOURCES = frozenset({"engine", "steering"})


@dataclass
class Running:
    """One evaluation in flight."""

    run_id: int
    experiment_id: int
    round: int
    kind: str
    elapsed_s: float
    #: The last line its command printed (terminal-safe, one line), "" before any.
    last_line: str


def running(store: Store, now: float | None = None, after_s: float = 0.0) -> list[Running]:
    """Every experiment in flight in the store for `after_s` seconds or more, with its
    elapsed time and last output line (looked up for those only: a library has hundreds in
    flight, most for less than a second)."""
    now = time.time() if now is None else now
    out = []
    # (the partial index on running experiments serves it; those started within `after_s`,
    # most of a library's, are not even read)
    rows = store.conn.execute(
        "SELECT run_id, id, round, kind, started FROM experiments WHERE verdict = 'running' "
        "AND (? <= 0 OR started <= ?) ORDER BY id", [after_s, now - after_s]).fetchall()
    for run_id, exp_id, round_no, kind, started in rows:
        elapsed = max(0.0, now - (started or now))
        out.append(Running(run_id, exp_id, round_no, kind, elapsed, last_output(store, exp_id)))
    return out


def last_output(store: Store, experiment_id: int) -> str:
    """The newest line an experiment's command printed (not the engine's own notes)."""
    for event in reversed(store.events(experiment_id=experiment_id, limit=20)):
        if event["source"] not in ENGINE_SOURCES and event["line"].strip():
            return printable(event["line"].strip(), one_line=True)
    return ""


def last_command_id(store: Store) -> int:
    rows = store.commands(None, limit=1)
    return rows[0]["id"] if rows else 0


def applied_commands(store: Store, after_id: int, run_ids: set[int]) -> list[dict[str, Any]]:
    """Commands after `after_id` that the engine applied, oldest first, stopping at the first
    one for these runs still waiting (so none is reported out of order or twice)."""
    out = []
    for command in sorted(store.commands(None, limit=200), key=lambda c: c["id"]):
        if command["id"] <= after_id:
            continue
        if command["run_id"] is not None and command["run_id"] not in run_ids:
            continue  # another engine's run: not ours to report
        if command["applied"] is None:
            break
        out.append(command)
    return out


def describe_command(command: dict[str, Any]) -> str:
    """`pause → paused`, `guide "shorter lines" → guidance noted...`, `veto #12 → ...`."""
    what = command["verb"]
    if command["target"] is not None:
        what += f" #{command['target']}"
    if command["argument"]:
        what += f" {printable(repr(command['argument']), one_line=True)}"
    result = printable(command["result"] or "", one_line=True)
    return f"{what} → {result}" if result else what
