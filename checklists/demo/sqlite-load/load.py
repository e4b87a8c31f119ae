"""Bulk-load 20,000 rows into a fresh SQLite database and print the time it took as
`METRIC load_ms=<value>`. The settings are the constants below; the demo's params mutator
rewrites them in place, one per round, looking for the fastest load.
"""

import os
import random
import shutil
import sqlite3
import tempfile
import time

PAGE_SIZE = 1024         # bytes per database page
CACHE_SIZE = 100         # pages held in memory
JOURNAL_MODE = "delete"  # delete, truncate, persist, memory, wal, off
SYNCHRONOUS = "full"     # off, normal, full
BATCH_SIZE = 20          # rows per transaction

ROWS = 20_000


def main() -> None:
    rng = random.Random(7)
    rows = [(i, rng.random(), "".join(rng.choices("abcdefgh", k=24))) for i in range(ROWS)]
    folder = tempfile.mkdtemp(prefix="load-", dir=".")
    path = os.path.join(folder, "load.db")
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={int(PAGE_SIZE)}")
    conn.execute(f"PRAGMA cache_size={int(CACHE_SIZE)}")
    conn.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x REAL, label TEXT)")
    conn.execute("CREATE INDEX t_label ON t(label)")
    batch = max(1, int(BATCH_SIZE))
    for i in range(0, ROWS, batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows[i:i + batch])
        conn.execute("COMMIT")
    conn.close()
    elapsed_ms = (time.perf_counter() - started) * 1000
    count = sqlite3.connect(path).execute("SELECT COUNT(*) FROM t").fetchone()[0]
    assert count == ROWS, f"loaded {count} rows, expected {ROWS}"
    print(f"loaded {count} rows")
    shutil.rmtree(folder, ignore_errors=True)
    print(f"METRIC load_ms={elapsed_ms:.1f}")


if __name__ == "__main__":
    main()
