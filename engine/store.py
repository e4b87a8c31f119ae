"""The SQLite store: schema, migrations and every SQL statement of the project.

One file, WAL mode, a busy timeout. The store is the single source of truth and the bus
between the engine and any UI: the engine is the one writer of runs and experiments; a UI
writes only small rows into `commands`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import retention
from engine.model import ADVANCING, RUNNING, UserError
from engine.redact import KeyBlockLines, make_redactor

SCHEMA_VERSION = 1
#: Largest text kept for one log tail, diff or evidence; longer text is cut in the middle.
MAX_TEXT = 64_000

if TYPE_CHECKING:
    from sqlite_utils import Database

Step = Callable[["Database"], None]


class LazyMigrations:
    """The store's migration steps, registered with the decorator of sqlite_utils' `Migrations`
    but handed to it only when one is pending. Importing sqlite_utils costs ~0.15 s (it pulls in
    numpy), a tenth of the app's start-up, and a store already up to date needs none of it."""

    table = "_sqlite_migrations"  # sqlite_utils' own bookkeeping table

    def __init__(self, name: str, renamed: dict[str, str] | None = None) -> None:
        self.name = name
        self.steps: list[tuple[Step, bool]] = []
        #: Old step names → new ones: sqlite_utils knows a step by its recorded name, so a
        #: store that applied a step under its old name has the record renamed first.
        self.renamed = renamed or {}

    def __call__(self, *, transactional: bool = True) -> Callable[[Step], Step]:
        def register(step: Step) -> Step:
            self.steps.append((step, transactional))
            return step

        return register

    def pending(self, conn: sqlite3.Connection) -> bool:
        """True if a step is not recorded as applied (read with plain sqlite3)."""
        try:
            done = {name for (name,) in conn.execute(
                f"SELECT name FROM {self.table} WHERE migration_set = ?", [self.name])}
        except sqlite3.OperationalError:  # no bookkeeping table: a new store
            return True
        old = [name for name in self.renamed if name in done]
        if old:
            with conn:
                conn.executemany(
                    f"UPDATE {self.table} SET name = ? WHERE migration_set = ? AND name = ?",
                    [(self.renamed[name], self.name, name) for name in old])
            done = (done - set(old)) | {self.renamed[name] for name in old}
        return any(step.__name__ not in done for step, _ in self.steps)

    def apply(self, db: Database) -> None:
        from sqlite_utils.migrations import Migrations

        real = Migrations(self.name)
        for step, transactional in self.steps:
            real(transactional=transactional)(step)
        real.apply(db)


#: Steps are numbered in the order they run. Four were once numbered out of order; stores
#: that applied them under those names are renamed on open (see LazyMigrations.renamed).
migrations = LazyMigrations("autoresearch", renamed={
    "m040_decision": "m003_decision", "m030_workers": "m004_workers",
    "m010_tui_indexes": "m005_tui_indexes", "m050_worker_queue": "m006_worker_queue"})


@migrations(transactional=False)
def m001_wal(db: Database) -> None:
    db.enable_wal()


@migrations()
def m002_schema(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            spec_path TEXT,
            spec_json TEXT,
            workspace TEXT,
            direction TEXT NOT NULL DEFAULT 'maximize',
            status TEXT NOT NULL DEFAULT 'created',
            stop_reason TEXT,
            best_experiment INTEGER,
            best_score REAL,
            baseline_score REAL,
            target REAL,
            rounds INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            branch TEXT,
            noise_json TEXT,
            prices_json TEXT,
            engine_pid INTEGER,
            heartbeat REAL,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            elapsed REAL NOT NULL DEFAULT 0
        );
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            parent INTEGER,
            kind TEXT NOT NULL,
            verdict TEXT NOT NULL DEFAULT 'running',
            reason TEXT,
            description TEXT NOT NULL DEFAULT '',
            rationale TEXT,
            diff TEXT,
            score REAL,
            delta REAL,
            metrics_json TEXT,
            worker TEXT,
            tier TEXT,
            wave INTEGER,
            started REAL NOT NULL,
            finished REAL,
            duration REAL,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            tokens_cache_write INTEGER NOT NULL DEFAULT 0,
            tokens_cache_read INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            git_commit TEXT,
            error TEXT,
            log_tail TEXT
        );
        CREATE INDEX experiments_run ON experiments(run_id, id);
        CREATE TABLE versions (
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            path TEXT NOT NULL,
            content TEXT NOT NULL,
            PRIMARY KEY (experiment_id, path)
        );
        CREATE TABLE item_results (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            item TEXT NOT NULL,
            input TEXT,
            sample INTEGER NOT NULL DEFAULT 0,
            passed INTEGER,
            evidence TEXT
        );
        CREATE INDEX item_results_experiment ON item_results(experiment_id);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            experiment_id INTEGER,
            ts REAL NOT NULL,
            level TEXT NOT NULL DEFAULT 'info',
            source TEXT NOT NULL DEFAULT 'engine',
            line TEXT NOT NULL
        );
        CREATE INDEX events_run ON events(run_id, id);
        CREATE TABLE commands (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            verb TEXT NOT NULL,
            target INTEGER,
            argument TEXT,
            created REAL NOT NULL,
            applied REAL,
            result TEXT
        );
        CREATE INDEX commands_pending ON commands(applied, run_id);
        """
    )


@migrations()
def m003_decision(db: Database) -> None:
    """Each verdict's structured evidence (gain, se, p, repeats, scores) as JSON."""
    db.execute("ALTER TABLE experiments ADD COLUMN decision_json TEXT")


@migrations()
def m004_workers(db: Database) -> None:
    """Worker slots' state (idle, busy, down) per run, for worker lanes in any UI."""
    db.executescript(
        """
        CREATE TABLE workers (
            run_id INTEGER NOT NULL,
            name TEXT NOT NULL,
            grp TEXT,
            status TEXT NOT NULL DEFAULT 'idle',
            job TEXT,
            reason TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            retry_at REAL,
            updated REAL NOT NULL,
            PRIMARY KEY (run_id, name)
        );
        """
    )


@migrations()
def m005_tui_indexes(db: Database) -> None:
    """Indexes for a UI's cheap polls: what finished lately, and what is in flight."""
    db.executescript(
        """
        CREATE INDEX IF NOT EXISTS experiments_finished ON experiments(finished);
        CREATE INDEX IF NOT EXISTS experiments_running ON experiments(verdict)
            WHERE verdict = 'running';
        """
    )


@migrations()
def m006_worker_queue(db: Database) -> None:
    """What a slot waits for outside an evaluation (a SLURM queue) and its batch job id."""
    db.execute("ALTER TABLE workers ADD COLUMN queue TEXT")
    db.execute("ALTER TABLE workers ADD COLUMN job_id TEXT")


from engine.calls import link as link_calls  # noqa: E402
from engine.schema import m007_foreign_keys, m008_views_and_indexes, m010_calls  # noqa: E402

migrations(transactional=False)(m007_foreign_keys)
migrations()(m008_views_and_indexes)


@migrations()
def m009_labels(db: Database) -> None:
    """A person's right/wrong labels of a judge's answers (engine/labels.py): one per
    (experiment, item, input, sample), with the output's hash and text (for re-judging)."""
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS labels (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            item TEXT NOT NULL,
            input TEXT NOT NULL DEFAULT '',
            sample INTEGER NOT NULL DEFAULT 0,
            output_hash TEXT,
            output TEXT,
            label INTEGER NOT NULL,
            note TEXT,
            created REAL NOT NULL,
            UNIQUE (experiment_id, item, input, sample)
        );
        """
    )


migrations()(m010_calls)

from engine.schema import m011_library_waiting, m012_version_deltas  # noqa: E402

migrations()(m011_library_waiting)
migrations()(m012_version_deltas)


def _apply_migrations(store: Store, tries: int = 5) -> None:
    """Apply migrations; another process opening a new store at the same moment (an engine and
    an attached app) can apply or record the same step first: a clash is retried, not fatal."""
    for attempt in range(tries):
        try:
            if not migrations.pending(store.conn):
                return
            migrations.apply(store.db)
            return
        except (sqlite3.IntegrityError, sqlite3.OperationalError):
            if attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def clip(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """Keep the head and tail of long text, marking the cut."""
    if text is None or len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit} characters cut] …\n{text[-half:]}"


#: Write-ahead log size past which the engine makes it start over (see Checkpointer).
WAL_CAP_BYTES = 64 << 20
#: How long that checkpoint waits for readers still on the old log.
LOG_RESTART_WAIT_MS = 200
#: How long a statement waits for another process's lock on the store.
BUSY_TIMEOUT_S = 30
#: How often a steering command tries again for the lock (Store.add_command).
COMMAND_RETRY_S = 0.001


def is_locked(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock this statement needs."""
    code = getattr(exc, "sqlite_errorcode", None)  # an extended code: the low byte is the kind
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Checkpointer:
    """Copies the write-ahead log into the database file from a thread of its own.

    SQLite does this inside whichever commit crosses 1,000 WAL pages, and that commit then
    waits for two fsyncs: a third of the store's time per experiment when evaluations are
    fast. Here the engine's commits only append to the log; this thread checkpoints
    (PASSIVE: never blocks the writer or readers) every `every_s` seconds. The log starts
    over only after a checkpoint that caught up with the writer; one that never pauses
    long enough is made to wait now and then (Store.keep_log_bounded).
    """

    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self.path = path
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=5)
        try:
            while not self._stop.wait(self.every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy, or disk trouble the engine reports itself: try again later
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Store:
    """All reads and writes of the SQLite file. One instance per thread of use."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._checkpointer: Checkpointer | None = None
        self._commits = 0
        try:
            if readonly:
                if not self.path.exists():
                    raise UserError(f"{self.path}: no such store (run something first, or pass --db)")
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                       timeout=BUSY_TIMEOUT_S)
            else:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            conn.execute("PRAGMA foreign_keys=ON")
            #: The connection; reads use it directly (see `db`).
            self.conn = conn
            self.redact = make_redactor()
            self._secrets: set[str] = set()
            #: A private key printed line by line is masked line by line.
            self._key_lines = KeyBlockLines()
            if not readonly:
                conn.execute("PRAGMA synchronous=NORMAL")
                _apply_migrations(self)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: cannot open the store: {exc}") from None

    @cached_property
    def db(self) -> Database:
        """sqlite_utils' view of the same connection, made on first use: opening a store and
        reading it must not pay for importing sqlite_utils (see `LazyMigrations`)."""
        from sqlite_utils import Database

        return Database(self.conn)

    def close(self) -> None:
        self.stop_checkpoints()
        self.conn.close()

    def checkpoint_in_background(self) -> None:
        """For the engine, the one busy writer: checkpoints move off its commits."""
        if self._checkpointer is None:
            self.conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = Checkpointer(self.path)

    def keep_log_bounded(self) -> None:
        """With background checkpoints, past WAL_CAP_BYTES of log: one checkpoint here that
        lets the log start over (a few ms, once per thousand experiments or so). Readers get
        LOG_RESTART_WAIT_MS to move on; if one holds on longer, the next call tries again."""
        self._commits += 1
        if self._checkpointer is None or self._commits % 64:
            return
        try:
            if os.stat(f"{self.path}-wal").st_size <= WAL_CAP_BYTES:
                return
        except OSError:
            return
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout={LOG_RESTART_WAIT_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error:
            pass  # disk trouble surfaces on the next write; busy: next time
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")

    def stop_checkpoints(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
            self.conn.execute("PRAGMA wal_autocheckpoint=1000")

    # ------------------------------------------------------------ helpers

    def add_secrets(self, values: list[str]) -> None:
        """Mask these values too (a spec's secret worker environment) in what is written."""
        fresh = set(values) - self._secrets
        if fresh:
            self._secrets |= fresh
            self.redact = make_redactor(extra=self._secrets)

    def _text(self, text: str | None, limit: int = MAX_TEXT) -> str | None:
        """Text as it may be stored: secrets masked, then clipped."""
        return clip(self.redact(text), limit)

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        with self.conn:
            cursor = self.conn.execute(sql, list(params))
        return cursor.lastrowid or 0

    # ------------------------------------------------------------ runs

    def get_run(self, name_or_id: str | int) -> dict[str, Any] | None:
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            row = self._one("SELECT * FROM runs WHERE id = ?", [int(name_or_id)])
            if row:
                return row
        return self._one("SELECT * FROM runs WHERE name = ?", [str(name_or_id)])

    def runs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM runs ORDER BY id")

    def set_waiting(self, reasons: dict[int, str | None]) -> None:
        """Why each of some runs waits for its next round (None: it does not)."""
        with self.conn:
            self.conn.executemany("UPDATE runs SET waiting = ? WHERE id = ?",
                                  [(why, rid) for rid, why in reasons.items()])

    def cost_since(self, run_id: int, since: float) -> float:
        """Money the run's experiments that finished after `since` spent."""
        row = self.conn.execute("SELECT SUM(cost_usd) FROM experiments WHERE run_id = ? AND "
                                "finished >= ?", [run_id, since]).fetchone()
        return row[0] or 0.0

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

    def commit(self) -> None:
        self.conn.commit()

    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def total_changes(self) -> int:
        """Rows changed on this connection so far: unchanged means nothing else wrote."""
        return self.conn.total_changes

    def has_experiment(self, exp_id: int, run_id: int) -> bool:
        return self.conn.execute("SELECT 1 FROM experiments WHERE id = ? AND run_id = ?",
                               [exp_id, run_id]).fetchone() is not None

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
            cols = ", ".join(f"{k} = ?" for k in sets)
            # Duration defaults to the time since the experiment started (in SQL: no extra read).
            conn.execute(f"UPDATE experiments SET {cols}, duration = COALESCE(?, ? - started) "
                         "WHERE id = ?", [*sets.values(), duration, now, exp_id])
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

    def experiment(self, exp_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM experiments WHERE id = ?", [exp_id])

    def experiments(self, run_id: int, *, after_id: int = 0, limit: int | None = None,
                    newest_first: bool = False) -> list[dict[str, Any]]:
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT * FROM experiments WHERE run_id = ? AND id > ? ORDER BY id {order}"
        params: list[Any] = [run_id, after_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._rows(sql, params)

    def changed_since(self, after_id: int, finished_after: float) -> list[dict[str, Any]]:
        """Experiments added after `after_id` or finished after a time: what a UI must redraw."""
        # Sorted here, not in SQL: see light_changes.
        rows = self._rows("SELECT * FROM experiments WHERE id > ? OR finished > ?",
                          [after_id, finished_after])
        return sorted(rows, key=lambda r: r["id"])

    #: Columns a mutator's view of the changelog needs (no logs: they can be megabytes).
    CHANGELOG_COLUMNS = ("id, round, parent, kind, verdict, reason, description, rationale, "
                         "score, delta, metrics_json, worker, tier, cost_usd, git_commit")

    def changelog(self, run_id: int, limit: int, after_id: int = 0) -> list[dict[str, Any]]:
        """The newest `limit` experiments after `after_id`, oldest first, without logs or diffs."""
        return self._rows(
            f"SELECT * FROM (SELECT {self.CHANGELOG_COLUMNS} FROM experiments "
            # held-out scorings never reach a mutator (engine/holdout.py)
            "WHERE run_id = ? AND id > ? AND kind != 'holdout' ORDER BY id DESC LIMIT ?) "
            "ORDER BY id",
            [run_id, after_id, limit])

    def experiments_of_kind(self, run_id: int, kind: str) -> list[dict[str, Any]]:
        """A run's experiments of one kind (e.g. `holdout`), oldest first."""
        return self._rows("SELECT * FROM experiments WHERE run_id = ? AND kind = ? ORDER BY id",
                          [run_id, kind])

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

    def labels(self, run_id: int) -> list[dict[str, Any]]:
        """A run's labels beside the judge's answer to the same (item, input, sample), oldest
        first (`passed` is None where the experiment has no such answer)."""
        return self._rows(
            "SELECT l.*, r.passed, r.evidence FROM labels l JOIN experiments e "
            "ON e.id = l.experiment_id LEFT JOIN item_results r ON r.experiment_id = "
            "l.experiment_id AND r.item = l.item AND COALESCE(r.input, '') = l.input "
            "AND r.sample = l.sample WHERE e.run_id = ? ORDER BY l.created, l.id", [run_id])

    def judged_answers(self, run_id: int, experiments: int) -> list[dict[str, Any]]:
        """The item answers of a run's newest `experiments` experiments that have any, oldest
        first (engine/labelling.py picks what a person labels from them)."""
        return self._rows(
            "SELECT r.* FROM item_results r WHERE r.experiment_id IN (SELECT DISTINCT "
            "experiment_id FROM item_results i JOIN experiments e ON e.id = i.experiment_id "
            "WHERE e.run_id = ? ORDER BY experiment_id DESC LIMIT ?) ORDER BY r.id",
            [run_id, experiments])

    def recent_outcomes(self, run_id: int, limit: int) -> list[dict[str, Any]]:
        """The newest experiments' kind, verdict and score, newest first (for stop rules,
        which count only the run's own: not an imported history)."""
        return self._rows(
            "SELECT id, kind, verdict, score, tier FROM experiments WHERE run_id = ? "
            "AND kind != 'imported' ORDER BY id DESC LIMIT ?", [run_id, limit])

    def in_flight(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM experiments WHERE run_id = ? AND verdict = ? ORDER BY id",
            [run_id, RUNNING])

    def last_round(self, run_id: int) -> int:
        row = self._one("SELECT MAX(round) AS r FROM experiments WHERE run_id = ?", [run_id])
        return max((row or {}).get("r") or 0, 0)  # imported history has rounds below 0

    def iter_experiments(self, run_id: int) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute("SELECT * FROM experiments WHERE run_id = ? ORDER BY id",
                                   [run_id])
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def item_results(self, exp_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM item_results WHERE experiment_id = ? ORDER BY id", [exp_id])

    def item_summary(self, exp_id: int) -> list[dict[str, Any]]:
        """Pass rate per item for one experiment, in the checklist's order."""
        return self._rows(
            "SELECT item, SUM(passed = 1) AS passed, COUNT(*) AS total, MIN(id) AS first "
            "FROM item_results WHERE experiment_id = ? GROUP BY item ORDER BY first", [exp_id])

    def version_files(self, exp_id: int) -> dict[str, str]:
        rows = self._rows("SELECT path, content, base FROM versions WHERE experiment_id = ?",
                          [exp_id])  # a reverted one's are deltas (engine/retention.py)
        return {r["path"]: retention.rebuild(self.conn, r["base"], r["path"], r["content"])
                for r in rows}

    def candidate_files(self, run_id: int, path: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` candidates' verdict and content of one file, oldest first
        (what a resumed params mutator tried before)."""
        rows = self._rows(
            "SELECT * FROM (SELECT e.id, e.verdict, e.score, v.content, v.base "
            "FROM experiments e "
            "JOIN versions v ON v.experiment_id = e.id AND v.path = ? "
            "WHERE e.run_id = ? AND e.kind = 'candidate' ORDER BY e.id DESC LIMIT ?) "
            "ORDER BY id", [path, run_id, limit])
        for r in rows:
            r["content"] = retention.rebuild(self.conn, r.pop("base"), path, r["content"])
        return rows

    def advancing_chain(self, run_id: int) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(ADVANCING))
        return self._rows(
            f"SELECT * FROM experiments WHERE run_id = ? AND verdict IN ({marks}) "
            "AND kind != 'imported' ORDER BY id",  # imported rows have no files to go back to
            [run_id, *ADVANCING])

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

    def events(self, run_id: int | None = None, *, after_id: int = 0, limit: int = 200,
               experiment_id: int | None = None) -> list[dict[str, Any]]:
        if experiment_id is not None:
            return self._rows(
                "SELECT * FROM (SELECT * FROM events WHERE experiment_id = ? AND id > ? "
                "ORDER BY id DESC LIMIT ?) ORDER BY id", [experiment_id, after_id, limit])
        # One statement per case: `(? IS NULL OR run_id = ?)` would make SQLite scan them all.
        if run_id is None:
            return self._rows("SELECT * FROM (SELECT * FROM events WHERE id > ? ORDER BY id "
                              "DESC LIMIT ?) ORDER BY id", [after_id, limit])
        return self._rows(
            "SELECT * FROM (SELECT * FROM events WHERE run_id = ? AND id > ? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id", [run_id, after_id, limit])

    # ------------------------------------------------------------ commands

    def add_command(self, run_id: int | None, verb: str, *, target: int | None = None,
                    argument: str | None = None, wait: bool = True) -> int | None:
        """Queue a steering command; its id. An engine recording fast rounds holds the write
        lock most of the time, letting go for a moment every few milliseconds: this write
        tries again every millisecond (SQLite's own waits grow to 100 ms and can miss every
        gap). wait=False tries once and returns None if the lock is taken: for a caller on
        the event loop of an engine in the same process, which cannot let go while it waits.
        """
        sql = ("INSERT INTO commands (run_id, verb, target, argument, created) "
               "VALUES (?, ?, ?, ?, ?)")
        params = [run_id, verb, target, argument, time.time()]
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        self.conn.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    return self._write(sql, params)
                except sqlite3.OperationalError as exc:
                    if not is_locked(exc) or time.monotonic() > deadline:
                        raise
                    if not wait:
                        return None
                time.sleep(COMMAND_RETRY_S)
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")

    def pending_commands(self, run_ids: Iterable[int]) -> list[dict[str, Any]]:
        ids = list(run_ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._rows(
            f"SELECT * FROM commands WHERE applied IS NULL AND (run_id IN ({marks}) "
            "OR run_id IS NULL) ORDER BY id", ids)

    def mark_applied(self, command_id: int, result: str) -> None:
        self._write("UPDATE commands SET applied = ?, result = ? WHERE id = ?",
                    [time.time(), result, command_id])

    def command(self, command_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM commands WHERE id = ?", [command_id])

    def commands(self, run_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if run_id is None:
            return self._rows("SELECT * FROM commands ORDER BY id DESC LIMIT ?", [limit])
        return self._rows("SELECT * FROM commands WHERE run_id = ? ORDER BY id DESC LIMIT ?",
                          [run_id, limit])

    # ------------------------------------------------------------ summaries

    def run_stats(self, run_id: int) -> dict[str, Any]:
        """Counts per verdict and money spent, for status lines and `status --json`."""
        rows = self._rows(
            "SELECT verdict, COUNT(*) AS n, SUM(cost_usd) AS cost FROM experiments "
            "WHERE run_id = ? GROUP BY verdict", [run_id])
        counts = {r["verdict"]: r["n"] for r in rows}
        return {"verdicts": counts, "experiments": sum(counts.values()),
                "cost_usd": sum(r["cost"] or 0 for r in rows)}

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # ------------------------------------------------------------ decisions (noise-robust)

    def set_decision(self, exp_id: int, details: dict[str, Any]) -> None:
        """Store a verdict's evidence, merged over what the experiment already holds."""
        row = self._one("SELECT decision_json FROM experiments WHERE id = ?", [exp_id])
        merged = {**json.loads((row or {}).get("decision_json") or "{}"), **details}
        self._write("UPDATE experiments SET decision_json = ? WHERE id = ?",
                    [json.dumps(merged), exp_id])

    def candidates_since(self, run_id: int, after_id: int) -> int:
        """How many candidates finished after an experiment (for re-evaluating the best)."""
        row = self._one("SELECT COUNT(*) AS n FROM experiments WHERE run_id = ? AND id > ? "
                        "AND kind = 'candidate' AND verdict != ?", [run_id, after_id, RUNNING])
        return (row or {}).get("n") or 0

    def last_reeval(self, run_id: int, best_id: int) -> dict[str, Any] | None:
        """The newest re-evaluation of this best version (scored or not)."""
        return self._one("SELECT * FROM experiments WHERE run_id = ? AND kind = 'reeval' AND "
                         "parent = ? ORDER BY id DESC LIMIT 1", [run_id, best_id])

    def pending_retests(self, run_id: int) -> list[dict[str, Any]]:
        """Experiments with verdict `retest` that no finished experiment has re-run yet."""
        return self._rows(
            "SELECT * FROM experiments AS e WHERE run_id = ? AND verdict = 'retest' "
            "AND NOT EXISTS (SELECT 1 FROM experiments AS r WHERE r.run_id = e.run_id "
            "AND r.id > e.id AND r.verdict NOT IN ('running', 'interrupted') "
            "AND json_extract(r.decision_json, '$.retest_of') = e.id) ORDER BY id", [run_id])

    # ------------------------------------------------------------ workers and tiers

    def set_tier(self, exp_id: int, tier: str | None) -> None:
        self._write("UPDATE experiments SET tier = ? WHERE id = ?", [tier, exp_id])

    def set_workers(self, run_id: int, rows: list[dict[str, Any]], *,
                    replace: bool = False) -> None:
        """Record worker slots' states in one transaction: dicts with name, group, status,
        job, reason, failures, retry_at (wall-clock), and for batch-system slots queue (what
        it waits for: "queued 2m14s, reason Resources") and job_id (SLURM's job or step). Rows keep their first order;
        `replace` forgets the run's other slots (its workers changed)."""
        now = time.time()
        with self.conn:
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

    def workers(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM workers WHERE run_id = ? ORDER BY rowid", [run_id])

    # ------------------------------------------------------------ light reads for a UI

    #: The columns a changelog row needs (no diff, log or rationale: those can be 64 KB each).
    LIGHT = ("id, run_id, round, parent, kind, verdict, reason, description, score, delta, "
             "worker, started, finished, duration, cost_usd")

    def changelog_page(self, run_id: int, *, before_id: int | None = None, limit: int = 200,
                       text: str | None = None) -> list[dict[str, Any]]:
        """A page of a run's changelog, newest first, optionally only rows mentioning `text`."""
        sql = f"SELECT {self.LIGHT} FROM experiments WHERE run_id = ? AND id < ?"
        params: list[Any] = [run_id, before_id if before_id is not None else 2**62]
        if text:
            like = f"%{text}%"
            sql += (" AND (verdict LIKE ? OR description LIKE ? OR reason LIKE ? "
                    "OR worker LIKE ? OR kind LIKE ?)")
            params += [like] * 5
        return self._rows(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])

    def tree_rows(self, run_id: int, after_id: int = 0) -> list[dict[str, Any]]:
        """A run's experiments (after `after_id`) with what its version tree shows, oldest first."""
        return self._rows("SELECT id, round, parent, kind, verdict, reason, score, delta, "
                          "description FROM experiments WHERE run_id = ? AND id > ? ORDER BY id",
                          [run_id, after_id])

    def score_points(self, run_id: int) -> list[tuple[int, int, str, float | None]]:
        """(id, round, verdict, score) of every experiment of a run, oldest first: the chart."""
        return self.conn.execute(
            "SELECT id, round, verdict, score FROM experiments WHERE run_id = ? ORDER BY id",
            [run_id]).fetchall()

    def recent_scores(self, run_id: int, limit: int = 60) -> list[float]:
        """The newest scores of a run, oldest first: a sparkline."""
        rows = self.conn.execute(
            "SELECT score FROM experiments WHERE run_id = ? AND score IS NOT NULL "
            "ORDER BY id DESC LIMIT ?", [run_id, limit]).fetchall()
        return [r[0] for r in reversed(rows)]

    def light_changes(self, after_id: int, finished_after: float) -> list[dict[str, Any]]:
        """`changed_since` without the heavy columns: what a UI polls several times a second."""
        # Sorted here: an ORDER BY makes SQLite walk the whole table in id order instead of
        # using the two indexes (100 ms instead of 0.1 ms on 100,000 experiments).
        rows = self._rows(f"SELECT {self.LIGHT} FROM experiments WHERE id > ? OR finished > ?",
                          [after_id, finished_after])
        return sorted(rows, key=lambda r: r["id"])

    def running_experiments(self) -> list[dict[str, Any]]:
        """Every experiment in flight, in every run (served by a partial index)."""
        return self._rows(
            f"SELECT {self.LIGHT} FROM experiments WHERE verdict = 'running' ORDER BY id")

    def verdicts_from(self, run_id: int, first_id: int) -> list[tuple[int, str, str | None]]:
        """(id, verdict, reason) of a run's experiments from `first_id` on: catches verdicts
        rewritten in place (a veto reverting a chain) that no timestamp announces."""
        return self.conn.execute(
            "SELECT id, verdict, reason FROM experiments WHERE run_id = ? AND id >= ? "
            "ORDER BY id", [run_id, first_id]).fetchall()

    def max_experiment_id(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM experiments").fetchone()[0]

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
