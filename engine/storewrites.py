"""The Store's writes of the engine, the one writer of runs and experiments: runs, an
experiment started and finished (one transaction a round), its versions, verdicts and
evidence, labels, event lines, worker slots' states, and bulk inserts for synthetic stores.
A mixin of engine/store.py's Store (finish_experiment calls its keep_log_bounded)."""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from engine import retention
from engine.calls import link as link_calls
from engine.model import RUNNING
from engine.storerows import StoreRows


@functools.cache
def _finish_sql(columns: tuple[str, ...]) -> str:
    """finish_experiment's UPDATE for these columns (a handful of combinations: made once).
    Duration defaults to the time since the experiment started (in SQL: no extra read)."""
    sets = ", ".join(f"{k} = ?" for k in columns)
    return f"UPDATE experiments SET {sets}, duration = COALESCE(?, ? - started) WHERE id = ?"


class StoreWrites(StoreRows):
    """Every write of runs, experiments, versions, labels, events and workers."""

    # ------------------------------------------------------------ runs

    def set_waiting(self, reasons: dict[int, str | None]) -> None:
        """Why each of some runs waits for its next round (None: it does not)."""
        with self.conn:
            self.conn.executemany("UPDATE runs SET waiting = ? WHERE id = ?",
                                  [(why, rid) for rid, why in reasons.items()])

    def create_run(self, name: str, *, spec_path: str, spec_json: str, workspace: str,
                   direction: str, target: float | None, prices: dict | None = None) -> int:
        return self._write(
            "INSERT INTO runs (name, spec_path, spec_json, workspace, direction, target, "
            "prices_json, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [name, spec_path, spec_json, workspace, direction, target,
             json.dumps(prices) if prices else None, time.time()],
        )

    def set_run_fields(self, run_id: int, fields: dict[str, Any]) -> None:
        """update_run in the caller's transaction (no commit here)."""
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.conn.execute(f"UPDATE runs SET {cols} WHERE id = ?", [*fields.values(), run_id])

    def update_run(self, run_id: int, **fields: Any) -> None:
        if fields:
            with self.conn:
                self.set_run_fields(run_id, fields)

    # ------------------------------------------------------------ experiments

    def start_experiment(self, run_id: int, *, round: int, kind: str, parent: int | None,
                         description: str = "", rationale: str = "", diff: str = "",
                         worker: str = "", tier: str | None = None, wave: int | None = None,
                         files: dict[str, str] | None = None, commit: bool = True,
                         exp_id: int | None = None,
                         parent_files: dict[str, str] | None = None) -> int:
        """Insert an experiment in flight, with the files it changes, in one transaction.

        With commit=False the transaction stays open for the next commit on this connection
        (see engine/records.py); `exp_id` re-inserts a row such a transaction lost.
        """
        conn = self.conn
        try:
            cursor = conn.execute(
                "INSERT INTO experiments (id, run_id, round, parent, kind, verdict, description, "
                "rationale, diff, worker, tier, wave, started) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [exp_id, run_id, round, parent, kind, RUNNING, self._text(description, 500),
                 self._text(rationale), self._text(diff), worker, tier, wave, time.time()],
            )
            new_id: int = cursor.lastrowid  # type: ignore[assignment]
            if files:  # a candidate's: deltas against its parent's files
                self.add_versions(new_id, files, None if parent is None or parent_files is None
                                  else (parent, parent_files))
            if commit:
                conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return new_id

    def finish_experiment(self, exp_id: int, *, verdict: str, reason: str = "",
                          score: float | None = None, delta: float | None = None,
                          metrics: dict | None = None, items: Iterable[Any] = (),
                          usage: Any = None, error: str = "", log_tail: str = "",
                          duration: float | None = None, worker: str | None = None,
                          run_update: dict[str, Any] | None = None,
                          best_files: dict[str, str] | None = None,
                          decision: dict[str, Any] | None = None,
                          events: list[tuple[int | None, int | None, str, str, str]] = (),
                          commit: bool = True, fresh: bool = False) -> None:
        """Record an experiment's outcome, its item results, its decision details, pending
        event lines and the run's new state in one transaction (one commit a round is what
        keeps the engine's overhead small next to a fast evaluation).

        This is the "log" of log-before-reset: it commits before any file is reverted.
        With commit=False the transaction stays open for a later commit (engine/records.py);
        fresh=True: the row has no decision details or item results yet (nothing to merge
        or replace: two statements fewer).
        """
        now = time.time()
        conn = self.conn
        try:
            sets: dict[str, Any] = {
                "verdict": verdict, "reason": self._text(reason, 2000), "score": score, "delta": delta,
                "metrics_json": json.dumps(metrics) if metrics else None,
                "error": self._text(error, 4000), "log_tail": self._text(log_tail, 8000),
                "finished": now,
            }
            if decision:
                row = None if fresh else conn.execute(
                    "SELECT decision_json FROM experiments WHERE id = ?", [exp_id]).fetchone()
                earlier = json.loads(row[0]) if row and row[0] else {}
                sets["decision_json"] = json.dumps({**earlier, **decision})
            if worker is not None:
                sets["worker"] = worker
            if usage is not None:
                sets.update(tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                            tokens_cache_write=usage.tokens_cache_write,
                            tokens_cache_read=usage.tokens_cache_read, cost_usd=usage.cost_usd)
                link_calls(conn, exp_id, usage)  # its model calls are counted (engine/calls.py)
            conn.execute(_finish_sql(tuple(sets)), [*sets.values(), duration, now, exp_id])
            if not fresh:
                conn.execute("DELETE FROM item_results WHERE experiment_id = ?", [exp_id])
            item_rows = [(exp_id, r.item, self._text(r.input, 2000), r.sample,
                          None if r.passed is None else int(r.passed), self._text(r.evidence, 2000))
                         for r in items]
            if item_rows:
                conn.executemany(
                    "INSERT INTO item_results (experiment_id, item, input, sample, passed, "
                    "evidence) VALUES (?, ?, ?, ?, ?, ?)", item_rows)
            if best_files is not None:  # a version to build on: whole
                self.add_versions(exp_id, best_files)
            if run_update:
                cols = ", ".join(f"{k} = ?" for k in run_update)
                conn.execute(f"UPDATE runs SET {cols} WHERE id = "
                             "(SELECT run_id FROM experiments WHERE id = ?)",
                             [*run_update.values(), exp_id])
            if events:
                self._insert_events(conn, events, now)
            if commit:
                conn.commit()
        except BaseException:
            conn.rollback()
            raise
        if commit:
            self.keep_log_bounded()

    def set_verdict(self, exp_id: int, verdict: str, reason: str) -> None:
        self._write("UPDATE experiments SET verdict = ?, reason = ? WHERE id = ?",
                    [verdict, reason, exp_id])

    def add_versions(self, exp_id: int, files: dict[str, str],
                     base: tuple[int, dict[str, str]] | None = None) -> None:
        """An experiment's file contents, in the caller's transaction (no commit here); with
        `base` (the parent's id and files), as deltas against them (engine/retention.py)."""
        rows = []
        for path, content in files.items():
            delta = None
            if base is not None and retention.DELTAS and path in base[1]:
                delta = retention.encode(base[1][path], content)
            rows.append((exp_id, path, content, None) if delta is None else
                        (exp_id, path, delta, base[0]))
        self.conn.executemany("INSERT OR REPLACE INTO versions (experiment_id, path, content, "
                              "base) VALUES (?, ?, ?, ?)", rows)

    def set_commit(self, exp_id: int, sha: str) -> None:
        self._write("UPDATE experiments SET git_commit = ? WHERE id = ?", [sha, exp_id])

    def add_label(self, exp_id: int, item: str, input: str, sample: int, label: bool, *,
                  note: str = "", output: str | None = None,
                  output_hash: str | None = None) -> None:
        """A person's yes/no for one answer; labelling it again replaces the label."""
        self._write(
            "INSERT INTO labels (experiment_id, item, input, sample, output_hash, output, label, "
            "note, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (experiment_id, item, "
            "input, sample) DO UPDATE SET label = excluded.label, note = excluded.note, "
            "output_hash = COALESCE(excluded.output_hash, output_hash), "
            "output = COALESCE(excluded.output, output), created = excluded.created",
            [exp_id, item, input or "", sample, output_hash, self._text(output), int(label),
             self._text(note, 2000), time.time()])

    # ------------------------------------------------------------ events

    def add_event(self, run_id: int | None, line: str, *, level: str = "info",
                  source: str = "engine", experiment_id: int | None = None) -> None:
        self._write(
            "INSERT INTO events (run_id, experiment_id, ts, level, source, line) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, experiment_id, time.time(), level, source, self._text(line, 2000)])

    def add_events(self, rows: list[tuple[int | None, int | None, str, str, str]]) -> None:
        """Insert many (run_id, experiment_id, level, source, line) rows in one transaction."""
        with self.conn:
            self._insert_events(self.conn, rows, time.time())

    def _insert_events(self, conn: sqlite3.Connection,
                       rows: list[tuple[int | None, int | None, str, str, str]], now: float) -> None:
        conn.executemany(
            "INSERT INTO events (run_id, experiment_id, ts, level, source, line) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(r, e, now, lvl, src, self._text(self._key_lines((r, e, src), line), 2000))
             for r, e, lvl, src, line in rows])

    # ------------------------------------------------------------ decisions (noise-robust)

    def set_decision(self, exp_id: int, details: dict[str, Any]) -> None:
        """Store a verdict's evidence, merged over what the experiment already holds."""
        row = self._one("SELECT decision_json FROM experiments WHERE id = ?", [exp_id])
        merged = {**json.loads((row or {}).get("decision_json") or "{}"), **details}
        self._write("UPDATE experiments SET decision_json = ? WHERE id = ?",
                    [json.dumps(merged), exp_id])

    # ------------------------------------------------------------ workers and tiers

    def set_tier(self, exp_id: int, tier: str | None) -> None:
        self._write("UPDATE experiments SET tier = ? WHERE id = ?", [tier, exp_id])

    def set_workers(self, run_id: int, rows: list[dict[str, Any]], *,
                    replace: bool = False, commit: bool = True) -> None:
        """Record worker slots' states in one transaction: dicts with name, group, status,
        job, reason, failures, retry_at (wall-clock), and for batch-system slots queue (what
        it waits for: "queued 2m14s, reason Resources") and job_id (SLURM's job or step). Rows keep their first order;
        `replace` forgets the run's other slots (its workers changed); commit=False leaves
        them in the open transaction (engine/records.py: a commit is about to come)."""
        now = time.time()
        with self.conn if commit else contextlib.nullcontext():
            if replace:
                self.conn.execute("DELETE FROM workers WHERE run_id = ?", [run_id])
            self.conn.executemany(
                "INSERT INTO workers (run_id, name, grp, status, job, reason, failures, "
                "retry_at, queue, job_id, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, name) DO UPDATE SET grp = excluded.grp, "
                "status = excluded.status, job = excluded.job, reason = excluded.reason, "
                "failures = excluded.failures, retry_at = excluded.retry_at, "
                "queue = excluded.queue, job_id = excluded.job_id, updated = excluded.updated",
                [(run_id, r["name"], r["group"], r["status"], r.get("job", ""),
                  self._text(r.get("reason", ""), 500), r.get("failures", 0), r.get("retry_at"),
                  self._text(r.get("queue", ""), 200), r.get("job_id", ""), now)
                 for r in rows])

    # ------------------------------------------------------------ synthetic stores

    def bulk_add_experiments(self, rows: Iterable[dict[str, Any]],
                             items: Iterable[tuple[int, str, int, int]] = ()) -> None:
        """Insert finished experiment rows (and (experiment_id, item, sample, passed) item
        results) in one transaction: synthetic stores for benchmarks and UI tests."""
        rows = list(rows)
        if not rows:
            return
        cols = sorted({k for r in rows for k in r})
        marks = ", ".join("?" * len(cols))
        with self.conn:
            self.conn.executemany(
                f"INSERT INTO experiments ({', '.join(cols)}) VALUES ({marks})",
                [[r.get(c) for c in cols] for r in rows])
            self.conn.executemany(
                "INSERT INTO item_results (experiment_id, item, sample, passed) VALUES (?, ?, ?, ?)",
                list(items))
