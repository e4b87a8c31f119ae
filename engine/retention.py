"""Bounded growth: reverted versions stored as diffs against their parent, and pruning.

A candidate's files are stored, when it is proposed, as a line delta against its parent's
full text (`versions.base` names the parent): a list whose items are either `[i, j]` (the
parent's lines i to j) or a string (new lines). A keep, and a version a person pins later,
is written in full again (versions others build on are whole); a reverted one stays a delta.
Stored whole first and shrunk later, the full rows' pages would stay in the file: the
table's keys only grow, so the space freed is never filled again. Readers never see a
delta: Store.version_files and Store.candidate_files rebuild the text.

`retention:` in a spec bounds the rest: item results and files of reverted experiments
older than `keep_days`, or beyond the newest `max_reverted` of the run, are pruned (the
newest FLOOR always stay: retests and a resumed params mutator read them). The changelog
rows stay — description, verdict, score, diff — and so does everything of the versions
the run advanced through, which is what the changelog and resume need.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
import time
from typing import Any

from engine.linediff import changed_runs
from engine.model import ADVANCING

#: JSON without spaces (one encoder: json.dumps with separators makes one a call).
_compact = json.JSONEncoder(separators=(",", ":")).encode
#: Deltas for reverted versions (a switch so bench/library.py measures both ways).
DELTAS = True
#: Reverted experiments per run that always keep their item results and files.
FLOOR = 50
#: How often the host prunes (engine/host.py).
PRUNE_EVERY_S = 60.0


def encode(parent: str, text: str) -> str | None:
    """`text` as a delta against `parent`, or None when the delta would not be smaller.
    The lines both share at the start and at the end are cut off first: most candidates
    change one place (a parameter, a paragraph), and matching only what is left between
    them keeps a fast run's encoding off the path between evaluations."""
    old, new = parent.splitlines(keepends=True), text.splitlines(keepends=True)
    head, limit = 0, min(len(old), len(new))
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    old_mid, new_mid = old[head:len(old) - tail], new[head:len(new) - tail]
    ops: list[Any] = [[0, head]] if head else []
    if len(old_mid) <= 1 or len(new_mid) <= 1:  # one place changed: nothing to match
        if new_mid:
            ops.append("".join(new_mid))
    elif (runs := changed_runs(old_mid, new_mid)) is not None:  # in place: no matcher
        at = 0  # (the middle's first and last lines differ: it starts and ends with a run)
        for begin, stop in runs:
            if begin > at:
                ops.append([head + at, head + begin])
            ops.append("".join(new_mid[begin:stop]))
            at = stop
    else:
        matcher = difflib.SequenceMatcher(None, old_mid, new_mid, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                ops.append([head + i1, head + i2])
            elif j2 > j1:
                ops.append("".join(new_mid[j1:j2]))
    if tail:
        ops.append([len(old) - tail, len(old)])
    out = _compact(ops)
    return out if len(out) < len(text) else None


def decode(parent: str, delta: str) -> str:
    old = parent.splitlines(keepends=True)
    return "".join(op if isinstance(op, str) else "".join(old[op[0]:op[1]])
                   for op in json.loads(delta))


def rebuild(conn: sqlite3.Connection, base: int | None, path: str, content: str,
            depth: int = 0) -> str:
    """The full text of a stored row (a delta's parent is full; a chain is followed,
    bounded)."""
    if base is None or depth > 64:
        return content
    row = conn.execute("SELECT content, base FROM versions WHERE experiment_id = ? AND "
                       "path = ?", [base, path]).fetchone()
    if row is None:
        return content  # its parent's files are gone: the delta is all there is
    return decode(rebuild(conn, row[1], path, row[0], depth + 1), content)


def prune(conn: sqlite3.Connection, run_id: int, keep_days: float | None,
          max_reverted: int | None, now: float | None = None) -> int:
    """Drop item results and files of the run's old reverted experiments; returns how many
    experiments lost them."""
    if keep_days is None and max_reverted is None:
        return 0
    marks = ",".join("?" * len(ADVANCING))
    rows = conn.execute(
        f"SELECT id, finished FROM experiments WHERE run_id = ? AND kind = 'candidate' AND "
        f"verdict NOT IN ({marks}) AND verdict != 'running' AND id NOT IN "
        "(SELECT COALESCE(best_experiment, 0) FROM runs) ORDER BY id DESC",
        [run_id, *ADVANCING]).fetchall()
    cutoff = (now or time.time()) - keep_days * 86400 if keep_days is not None else None

    def old(n: int, finished: float | None) -> bool:
        if n < FLOOR:
            return False
        if max_reverted is not None and n >= max_reverted:
            return True
        return cutoff is not None and (finished or 0) < cutoff

    gone = [i for n, (i, finished) in enumerate(rows) if old(n, finished)
            and not conn.execute(  # a vetoed keep others were proposed from stays
                "SELECT 1 FROM versions WHERE base = ? LIMIT 1", [i]).fetchone()]
    with conn:
        for start in range(0, len(gone), 500):
            chunk = gone[start:start + 500]
            q = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM item_results WHERE experiment_id IN ({q})", chunk)
            conn.execute(f"DELETE FROM versions WHERE experiment_id IN ({q})", chunk)
    return len(gone)
