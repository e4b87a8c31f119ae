"""The engine hosted inside the app: one `engine.host.Host` on the app's event loop, with its
own store connection, fed specs through a queue so runs can be started at any time (`n`).

The app never steers through this object: it writes command rows like an attached app does,
and the host's command poller applies them. This class only starts runs, reports the worker
slots, and stops everything on quit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from engine.host import Host
from engine.model import UserError
from engine.spec import Spec
from engine.store import Store


class EngineHost:
    """Hosts runs in-process; `serve` runs inside the app's one engine worker."""

    def __init__(self, db: Path, on_change: Callable[[], None],
                 on_error: Callable[[str], None]) -> None:
        self.db = db
        self.on_change = on_change
        self.on_error = on_error
        self.store: Store | None = None
        self.host: Host | None = None
        self._queue: asyncio.Queue[Spec] = asyncio.Queue()

    def start(self, spec: Spec) -> None:
        """Queue a run; the engine worker adds and starts it."""
        self._queue.put_nowait(spec)

    async def serve(self) -> None:
        """Start queued runs for as long as the app lives."""
        # The engine's own connection, opened on the loop that uses it.
        self.store = Store(self.db)
        self.host = Host(self.store)
        self.host.listeners.append(self.on_change)
        try:
            while True:
                spec = await self._queue.get()
                try:
                    loop = self.host.add(spec)
                except UserError as exc:
                    self.on_error(str(exc))
                    continue
                task = self.host.start(loop)
                task.add_done_callback(self._report)
                self.on_change()
        finally:
            await self._shutdown()

    async def _shutdown(self, grace_s: float = 10.0) -> None:
        """The app is closing: stop the runs cleanly (bounded), then cancel what is left."""
        assert self.host is not None
        tasks = [t for t in self.host.tasks.values() if not t.done()]
        if tasks:
            self.host.stop_all()
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        try:  # leaving the app never hangs on what closing waits for (a hook, a poller)
            await asyncio.wait_for(self.host.close(), timeout=10)
        except TimeoutError:
            pass

    def _report(self, task: asyncio.Task[str]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_error(f"{task.get_name()}: {task.exception()!r}")

    # ------------------------------------------------------------ state

    def active(self) -> list[int]:
        """Runs whose loop is still going."""
        if self.host is None:
            return []
        return [rid for rid, task in self.host.tasks.items() if not task.done()]

    def slots(self, run_id: int) -> list[tuple[str, str | None]]:
        """(slot name, what it runs or None) for a hosted run's worker pool."""
        if self.host is None or run_id not in self.host.loops:
            return []
        pool = self.host.loops[run_id].pool
        return [(w.name, pool.busy.get(w.name)) for w in pool.workers]

    def hosts(self, run_id: int) -> bool:
        return run_id in self.active()

    # ------------------------------------------------------------ stopping

    def stop_all(self) -> None:
        """A clean stop: evaluations in flight are recorded as interrupted, nothing is lost."""
        if self.host is not None:
            self.host.stop_all()

    def force(self) -> None:
        """Cancel every run now (the second Ctrl-C)."""
        if self.host is not None:
            for task in self.host.tasks.values():
                task.cancel()
