"""When the store cannot be written (a full disk, a read-only file): one alert, a pause at once,
nothing evaluated dropped, and the run goes on by itself once writes work again.

A write can fail on the loop's own path (it raises there) or in a callback (a timer that
commits waiting records, the workers' row flush, the event flush, the command poller), which
has nobody to raise to. Every such path hands the error to the run's StorageGuard: it sets
the run's one-line alert, and the loop pauses before its next proposal (the evaluation in
flight finishes; its outcome waits in memory, engine/records.py). The guard then probes:
once the store's folder has room again and the waiting records, events and worker rows are
written, the alert clears and the run goes on, round numbers running on without a gap.

A small reserve (a preallocated file beside the store) is given up when the disk is full, so
that the pause and a stop can still be recorded; it is made again before the run goes on,
which is also how the guard knows the disk has room again.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.locks import sidecar_dir

if TYPE_CHECKING:
    from engine.context import RunContext as RunLoop  # (the loop's shared pieces)

#: How often a paused run tries to write again.
PROBE_S = 1.0
#: Bytes held in reserve beside the store, in two files (one for the pause, one for a stop).
RESERVE_BYTES = 256 * 1024
RESERVE_FILES = ("reserve-1", "reserve-2")


def storage_trouble(exc: BaseException) -> bool:
    """A write failed for a reason outside the run: full disk, read-only file, a locked store."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(k in text for k in ("full", "readonly", "read-only", "disk i/o", "locked",
                                       "unable to open"))
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES)
    return False


def alert_for(exc: BaseException) -> str:
    """The one line a person sees while the run is paused for its store."""
    return (f"paused: cannot write ({exc}); free disk space or fix permissions — "
            f"the run resumes by itself when writes work again")


class Reserve:
    """Preallocated files beside the store, given up one at a time when the disk is full."""

    def __init__(self, db: Path) -> None:
        self.folder = sidecar_dir(db)

    def make(self) -> bool:
        """Make every reserve file; False when the disk has no room for them (yet)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name in RESERVE_FILES:
                path = self.folder / name
                if path.exists() and path.stat().st_size >= RESERVE_BYTES:
                    continue
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    _allocate(fd, RESERVE_BYTES)
                except OSError:
                    os.close(fd)
                    path.unlink(missing_ok=True)
                    return False
                os.close(fd)
        except OSError:
            return False
        return True

    def release(self) -> bool:
        """Give up one reserve file; False when none is left."""
        for name in RESERVE_FILES:
            path = self.folder / name
            if path.exists():
                path.unlink(missing_ok=True)
                return True
        return False


def _allocate(fd: int, size: int) -> None:
    """Really take the blocks (a sparse file would give nothing back)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except (AttributeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise
        os.pwrite(fd, b"\0" * size, 0)
        os.fsync(fd)


class StorageGuard:
    """One run's view of whether its store can be written, and what to do when it cannot."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop
        self.reserve = Reserve(loop.store.path)
        self.reserve.make()
        #: The write error the run is paused for; None when writes work.
        self.trouble: BaseException | None = None

    @property
    def down(self) -> bool:
        return self.trouble is not None

    def trip(self, exc: BaseException) -> None:
        """A write failed somewhere: alert once, and record the pause if the reserve allows.
        Any other failure (a bug, not the disk) is logged, not raised into a callback."""
        if not storage_trouble(exc):
            self.loop.log(f"a write failed: {exc!r}", level="error")
            return
        if self.trouble is not None:
            return
        self.trouble = exc
        self.loop.alert = alert_for(exc)
        self.loop.notify()
        if self.reserve.release():  # so the store shows the pause, and the outcomes are safe
            self._try(lambda: self._write_all(status="paused", stop_reason=self.loop.alert))

    def quietly(self, write: Callable[[], object]) -> None:
        """Run a write from a callback (nobody to raise to): trouble trips the guard."""
        try:
            write()
        except (sqlite3.Error, OSError) as exc:
            self.trip(exc)

    async def wait(self) -> None:
        """While the store cannot be written: stay paused (a stop ends the wait), probe every
        PROBE_S, and go on once the reserve is made again and everything waiting is written."""
        if self.trouble is None:
            return
        next_probe = time.monotonic() + PROBE_S
        while not self.loop.stopping:
            await asyncio.sleep(0.05)
            if time.monotonic() < next_probe:
                continue
            next_probe = time.monotonic() + PROBE_S
            if self.reserve.make() and self._try(
                    lambda: self._write_all(status="paused" if self.loop.paused else "running",
                                         stop_reason=None)):
                self.recovered()
                return

    async def committed(self) -> None:
        """Wait until every waiting record is committed (a keep, before it becomes the best).
        A stop while the store cannot be written gives up the reserve, then the error."""
        records = self.loop.records
        while True:
            try:
                records.write()
                return
            except (sqlite3.Error, OSError) as exc:
                self.trip(exc)
                if self.loop.stopping:
                    self.reserve.release()
                    records.write()
                    return
            await self.wait()

    def recovered(self) -> None:
        """Writes work again (the loop's own reconciliation, or a probe): clear the alert."""
        exc, self.trouble = self.trouble, None
        self.loop.alert = None
        if exc is not None:
            self.loop.log(f"storage works again after: {exc}", level="warning")
        self.loop.notify()

    def with_reserve(self, write: Callable[[], object]) -> None:
        """A write that must happen (recording a stop): on a full disk give up the reserve
        and try once more; the error propagates if that did not help."""
        try:
            write()
        except (sqlite3.Error, OSError) as exc:
            if not storage_trouble(exc) or not self.reserve.release():
                raise
            write()

    # ------------------------------------------------------------ internals

    def _write_all(self, **run_fields: object) -> None:
        """Everything that waits for the store, then the run's row; raises on trouble."""
        loop = self.loop
        loop.records.write()
        loop.flush_events()
        loop.flush_workers()
        loop.store.update_run(loop.run_id, heartbeat=time.time(), **run_fields)

    def _try(self, write: Callable[[], object]) -> bool:
        try:
            write()
        except (sqlite3.Error, OSError) as exc:
            if not storage_trouble(exc):
                raise
            return False
        return True
