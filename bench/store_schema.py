"""Opening one old experiment's log on a store with many events, before and after the
store's schema migration (engine/schema.py adds events(experiment_id)), and what the
migration itself costs (a table rebuild per table that gains a foreign key).

    python bench/store_schema.py [EVENTS]      # default 1,000,000 events over 10,000 experiments

Prints the query's time without the index, with it, their ratio, and the migration's time.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.store import Store  # noqa: E402

OLD_SCHEMA = Path(__file__).resolve().parent.parent / "tests" / "data" / "store_v1_schema.sql"
QUERY = ("SELECT * FROM (SELECT * FROM events WHERE experiment_id = ? AND id > 0 "
         "ORDER BY id DESC LIMIT 200) ORDER BY id")


def best_of(conn: sqlite3.Connection, exp_id: int, times: int = 5) -> float:
    best = float("inf")
    for _ in range(times):
        t = time.perf_counter()
        conn.execute(QUERY, [exp_id]).fetchall()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    experiments = 10_000
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "old.db"
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=wal")
        with conn:
            conn.executescript(OLD_SCHEMA.read_text())
            conn.execute("INSERT INTO runs (id, name, created) VALUES (1, 'r', 0)")
            conn.executemany(
                "INSERT INTO experiments (id, run_id, round, kind, verdict, started) "
                "VALUES (?, 1, ?, 'candidate', 'reverted', 0)",
                [(i, i) for i in range(1, experiments + 1)])
            conn.executemany(
                "INSERT INTO events (run_id, experiment_id, ts, line) VALUES (1, ?, 0, 'a line')",
                [(1 + i * experiments // events,) for i in range(events)])
        before = best_of(conn, 17)
        conn.close()
        t, cpu = time.perf_counter(), time.process_time()
        store = Store(db)
        migrated, cpu = time.perf_counter() - t, time.process_time() - cpu
        after = best_of(store.conn, 17)
        store.close()
    print(f"{events:,} events: an old experiment's log {before * 1000:.1f} ms without the index, "
          f"{after * 1000:.2f} ms with it ({before / after:.0f}x faster); "
          f"migrating the store took {migrated:.1f} s once ({cpu:.1f} s of CPU)")


if __name__ == "__main__":
    main()
