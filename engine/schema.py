"""The store's later migrations: a schema that explains itself to other tools.

sqlite-utils, Datasette and any SQLite browser read the store; these steps make it read
well there: every reference declared as a foreign key (Datasette links rows through them),
views of the changelog and of the best version's path with ISO-8601 times and the gain
signed toward better, and the indexes every query of the app and the CLI needs
(tests/test_store_schema.py checks each query's plan). Registered in engine/migrations.py, in order.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

#: (table, column, other table, other column): every reference between the store's tables
#: but one: `commands.target` names an experiment as a person typed or picked it, and the
#: engine answers a wrong one ("no such experiment") instead of the store refusing the
#: command (a UI's write must not fail on it).
FOREIGN_KEYS = [
    ("runs", "best_experiment", "experiments", "id"),
    ("experiments", "parent", "experiments", "id"),
    ("events", "run_id", "runs", "id"),
    ("events", "experiment_id", "experiments", "id"),
    ("commands", "run_id", "runs", "id"),
    ("workers", "run_id", "runs", "id"),
]

#: An epoch float as ISO-8601 UTC with milliseconds (`2026-12-01T09:16:57.123Z`).
ISO = "strftime('%Y-%m-%dT%H:%M:%fZ', {}, 'unixepoch')"

VIEWS = {
    # Every experiment of every run, in order, as a person reads a changelog.
    "changelog": f"""
        SELECT rn.name AS run, e.id AS experiment, e.round, e.parent, e.kind, e.verdict,
               e.score,
               CASE WHEN rn.direction = 'minimize' THEN -e.delta ELSE e.delta END AS gain,
               e.description, e.reason, e.git_commit AS "commit",
               {ISO.format('e.started')} AS started_at,
               {ISO.format('e.finished')} AS finished_at,
               e.duration, e.cost_usd, e.worker, e.tier, e.run_id
        FROM experiments AS e JOIN runs AS rn ON rn.id = e.run_id""",
    # The chain of versions that led to each run's best, from the baseline on.
    "best_path": f"""
        WITH RECURSIVE path(run_id, id, depth) AS (
            SELECT id, best_experiment, 0 FROM runs WHERE best_experiment IS NOT NULL
            UNION ALL
            SELECT p.run_id, e.parent, p.depth + 1 FROM path AS p
            JOIN experiments AS e ON e.id = p.id
            WHERE e.parent IS NOT NULL AND p.depth < 1000000)
        SELECT rn.name AS run, e.id AS experiment, e.round, e.parent, e.kind, e.verdict,
               e.score,
               CASE WHEN rn.direction = 'minimize' THEN -e.delta ELSE e.delta END AS gain,
               e.description, e.git_commit AS "commit",
               {ISO.format('e.started')} AS started_at, p.depth AS steps_from_best, e.run_id
        FROM path AS p JOIN experiments AS e ON e.id = p.id JOIN runs AS rn ON rn.id = p.run_id""",
    # Log lines with readable times and the run's name.
    "event_log": f"""
        SELECT v.id, rn.name AS run, v.experiment_id AS experiment,
               {ISO.format('v.ts')} AS at, v.level, v.source, v.line, v.run_id
        FROM events AS v LEFT JOIN runs AS rn ON rn.id = v.run_id""",
    # Each run with its times readable.
    "run_summary": f"""
        SELECT id, name, status, stop_reason, direction, baseline_score, best_score,
               best_experiment, rounds, cost_usd, branch,
               {ISO.format('created')} AS created_at, {ISO.format('started')} AS started_at,
               {ISO.format('finished')} AS finished_at, {ISO.format('heartbeat')} AS heartbeat_at,
               elapsed
        FROM runs""",
}

INDEXES = """
    CREATE INDEX IF NOT EXISTS events_experiment ON events(experiment_id, id);
    CREATE INDEX IF NOT EXISTS commands_run ON commands(run_id, id);
    CREATE INDEX IF NOT EXISTS experiments_parent ON experiments(parent);
    CREATE INDEX IF NOT EXISTS runs_best ON runs(best_experiment);
"""


def m007_foreign_keys(db: Database) -> None:
    """Declare every reference as a foreign key: a table rebuild per table that gains one
    (indexes kept), all in one transaction, with enforcement off meanwhile (registered
    non-transactional: the pragma cannot change inside a transaction). Otherwise SQLite would
    check every key of the whole store after each table, and sqlite-utils would VACUUM it:
    minutes on a store of millions of events instead of seconds. A dangling reference an older
    store may hold (an event of an experiment a lost transaction took away) is cleared first:
    it pointed nowhere, and would fail the check. Safe to re-run after a crash midway."""
    from engine.sqlitelib import sqlite_utils

    ForeignKey = sqlite_utils().db.ForeignKey

    enforced = db.execute("PRAGMA foreign_keys").fetchone()[0]
    db.execute("PRAGMA foreign_keys=OFF")
    try:
        with db.conn:
            db.execute("BEGIN IMMEDIATE")
            for table, column, other, other_column in FOREIGN_KEYS:
                db.execute(f"UPDATE {table} SET {column} = NULL WHERE {column} IS NOT NULL AND "
                           f"{column} NOT IN (SELECT {other_column} FROM {other})")
            have = {(fk.table, fk.column) for t in db.tables for fk in t.foreign_keys}
            by_table: dict[str, list[ForeignKey]] = {}
            for table, column, other, other_column in FOREIGN_KEYS:
                if (table, column) not in have:
                    by_table.setdefault(table, []).append(
                        ForeignKey(table, column, other, other_column))
            for table, fks in by_table.items():
                db.table(table).transform(add_foreign_keys=fks)
            if db.execute("PRAGMA foreign_key_check").fetchall():
                raise sqlite3.IntegrityError("FOREIGN KEY constraint failed after migration")
    finally:
        if enforced:
            db.execute("PRAGMA foreign_keys=ON")


def m008_views_and_indexes(db: Database) -> None:
    """The changelog, best_path, event_log and run_summary views, and the missing indexes."""
    db.executescript(INDEXES)
    for name, sql in VIEWS.items():
        db.execute(f"DROP VIEW IF EXISTS {name}")
        db.execute(f"CREATE VIEW {name} AS {sql}")


#: The journal of model calls, one row a call (engine/calls.py has the states).
CALLS = """
    CREATE TABLE IF NOT EXISTS calls (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        -- the experiment being scored when the call was made, or the one whose usage
        -- counts it; not a declared key: it may name a row of a transaction not yet
        -- committed (engine/records.py), which a rollback takes away and puts back
        experiment_id INTEGER,
        role TEXT NOT NULL,
        model TEXT,
        state TEXT NOT NULL,
        accounted INTEGER NOT NULL DEFAULT 0,
        started REAL NOT NULL,
        finished REAL,
        estimate_usd REAL NOT NULL DEFAULT 0,
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        tokens_cache_write INTEGER NOT NULL DEFAULT 0,
        tokens_cache_read INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS calls_open ON calls(run_id, accounted);
    CREATE INDEX IF NOT EXISTS calls_state ON calls(run_id, state, experiment_id);
    CREATE INDEX IF NOT EXISTS calls_experiment ON calls(experiment_id);
"""


def m010_calls(db: Database) -> None:
    """The journal of model calls (engine/calls.py): a kill cannot lose what a call cost."""
    db.executescript(CALLS)


def m011_library_waiting(db: Database) -> None:
    """Why a library's run waits for its next round (engine/scheduler.py), for `status`."""
    db.execute("ALTER TABLE runs ADD COLUMN waiting TEXT")


def m012_version_deltas(db: Database) -> None:
    """A reverted version's files as a delta against its parent's (engine/retention.py)."""
    db.execute("ALTER TABLE versions ADD COLUMN base INTEGER")
    db.execute("CREATE INDEX versions_base ON versions(base) WHERE base IS NOT NULL")
