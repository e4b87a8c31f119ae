"""The SQLite store: the connection, its locks and checkpoints, and steering commands.

One file, WAL mode, a busy timeout. The store is the single source of truth and the bus
between the engine and any UI: the engine is the one writer of runs and experiments; a UI
writes only small rows into `commands`.

The Store's other statements are its parts, mixins by concept: engine/storewrites.py (the
engine's writes), engine/storereads.py (reads of whole rows), engine/storeui.py (a UI's light
polls), on engine/storerows.py's helpers; the schema's steps are in engine/migrations.py.
What other modules import from here (Store, migrations, clip, ...) is still importable.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import bell, sqlitelib
from engine.migrations import LazyMigrations, Step, _apply_migrations, migrations  # noqa: F401
from engine.model import UserError
from engine.redact import KeyBlockLines, make_redactor
from engine.storereads import StoreReads
from engine.storerows import MAX_TEXT, StoreRows, clip  # noqa: F401
from engine.storeui import UiReads
from engine.storewrites import StoreWrites

SCHEMA_VERSION = 1

if TYPE_CHECKING:
    from sqlite_utils import Database

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


def _on_running_loop() -> bool:
    """Is this thread running an asyncio event loop? (Not imported: no; a store opened by
    a command must not pay for importing asyncio.)"""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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


class Store(StoreWrites, StoreReads, UiReads):
    """All reads and writes of the SQLite file. One instance per thread of use."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._checkpointer: Checkpointer | None = None
        self._trying = False  # inside try_write (see only_writes_that_never_wait)
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
        return sqlitelib.sqlite_utils().Database(self.conn)

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

    # ------------------------------------------------------------ transactions

    def commit(self) -> None:
        self.conn.commit()

    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def total_changes(self) -> int:
        """Rows changed on this connection so far: unchanged means nothing else wrote."""
        return self.conn.total_changes

    # ------------------------------------------------------------ commands

    def add_command(self, run_id: int | None, verb: str, *, target: int | None = None,
                    argument: str | None = None, wait: bool = True) -> int | None:
        """Queue a steering command; its id. An engine recording fast rounds holds the write
        lock most of the time, letting go for a moment every few milliseconds: this write
        tries again every millisecond (SQLite's own waits grow to 100 ms and can miss every
        gap). wait=False tries once and returns None if the lock is taken: for a caller on
        the event loop of an engine in the same process, which cannot let go while it waits.
        """
        if wait and _on_running_loop():
            # Waiting here would stop the loop, and an engine on it holds its open
            # transaction until the loop runs again: the wait could only time out.
            raise RuntimeError("add_command(wait=True) on a running event loop: "
                               "await send_command() instead")
        sql = ("INSERT INTO commands (run_id, verb, target, argument, created) "
               "VALUES (?, ?, ?, ?, ?)")
        params = [run_id, verb, target, argument, time.time()]
        written: list[int] = []
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while not self.try_write(lambda: written.append(self._write(sql, params))):
            if not wait:
                return None
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked")
            time.sleep(COMMAND_RETRY_S)
        bell.ring(self.path)  # the engines hosting this store read it now (engine/bell.py)
        return written[0]

    def only_writes_that_never_wait(self) -> None:
        """For the app's connection, on the loop that may carry an engine: a write outside
        `try_write` is refused (sqlite3.DatabaseError "not authorized") instead of waiting
        for the lock there, which would freeze the app (see try_write). An authorizer
        refuses while the statement is prepared, before sqlite3's implicit BEGIN; `PRAGMA
        query_only` would fail the step instead and leave that BEGIN open, the app's reads
        stuck on its snapshot."""
        writes = (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE)

        def authorize(action: int, *_: object) -> int:
            if action in writes and not self._trying:
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        self.conn.set_authorizer(authorize)

    def try_write(self, write: Callable[[], object]) -> bool:
        """Run `write` (statements that commit) once, without waiting for the write lock:
        False, with nothing written, when another connection holds it. For a writer on the
        event loop of an engine in the same process (the app), which could not let go of
        its open transaction while this waited."""
        self.conn.execute("PRAGMA busy_timeout=0")
        self._trying = True
        try:
            write()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            if self.conn.in_transaction:
                self.conn.rollback()
            return False
        finally:
            self._trying = False
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        return True

    async def send_command(self, run_id: int | None, verb: str, *, target: int | None = None,
                           argument: str | None = None) -> int:
        """add_command for a caller on an event loop (a test beside an in-process engine, a
        script): between tries the loop runs, so an engine on it can commit and let go."""
        import asyncio

        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while (cid := self.add_command(run_id, verb, target=target, argument=argument,
                                       wait=False)) is None:
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked")
            await asyncio.sleep(COMMAND_RETRY_S)
        return cid

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
