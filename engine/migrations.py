"""The store's schema, step by step: the first steps here, the later ones in engine/schema.py,
all registered here in the order they run, and applied when a store opens (`_apply_migrations`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine import sqlitelib
from engine.schema import (
    m007_foreign_keys,
    m008_views_and_indexes,
    m010_calls,
    m011_library_waiting,
    m012_version_deltas,
)

if TYPE_CHECKING:
    from sqlite_utils import Database

    from engine.store import Store

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
        sqlitelib.sqlite_utils()  # (first: it imports sqlite_utils without pandas)
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

migrations()(m011_library_waiting)
migrations()(m012_version_deltas)


#: A new store's whole content once migrated (its schema and the steps' records) as SQL,
#: kept from the first new store this process migrated: later new stores are written from it
#: in one transaction instead of step by step (~80 ms of sqlite_utils table rebuilds each; a
#: test suite makes hundreds, bench/engine_overhead.py one a trial).
_fresh: list[str] | None = None


def _apply_migrations(store: Store, tries: int = 5) -> None:
    """Apply migrations; another process opening a new store at the same moment (an engine and
    an attached app) can apply or record the same step first: a clash is retried, not fatal."""
    global _fresh
    for attempt in range(tries):
        try:
            if not migrations.pending(store.conn):
                return
            if _fresh is not None and _write_fresh(store.conn, _fresh):
                return
            new = _is_empty(store.conn)
            migrations.apply(store.db)
            if new and _fresh is None:
                _fresh = [sql for sql in store.conn.iterdump()
                          if sql not in ("BEGIN TRANSACTION;", "COMMIT;")
                          and not sql.startswith("PRAGMA") and "sqlite_sequence" not in sql]
            return
        except (sqlite3.IntegrityError, sqlite3.OperationalError):
            if attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _is_empty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def _write_fresh(conn: sqlite3.Connection, statements: list[str]) -> bool:
    """Write a new store's content in one transaction; False (nothing written) when the file
    is not empty by then (another process made it meanwhile: it is migrated as usual)."""
    conn.execute("PRAGMA journal_mode=WAL")  # (m001_wal: it cannot change in a transaction)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _is_empty(conn):
            conn.rollback()
            return False
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return True
