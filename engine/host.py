"""The host: runs several loops concurrently in one asyncio process, applies steering commands
from the store to them, and tells listeners when something changed.

A run can be hosted by one engine at a time, and a workspace worked on by one engine at a
time; OS file locks (released even on SIGKILL) refuse a second one (engine/locks.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from engine import bell, cadence, leftovers, redact, retention
from engine import spec as specs
from engine.gcfreeze import freeze_imports
from engine.locks import WorkspaceLock, sidecar_dir, take_workspace
from engine.loop import BaselineFailed, RunLoop
from engine.model import UserError
from engine.mutators import IGNORED_GUIDANCE
from engine.notify import Notifications
from engine.scheduler import Libraries
from engine.storage import storage_trouble
from engine.store import Store
from engine.workers.childwatch import watch_children_with_pidfds

#: How often the command table is read besides when rung (engine/bell.py: a command's
#: writer rings, and steering applies at once); a writer that does not ring waits this long.
COMMAND_POLL_S = 5 * cadence.BEAT_S
#: ...and where there is no bell.
UNRUNG_POLL_S = cadence.BEAT_S
VERBS = ("pause", "resume", "stop", "veto", "pin", "guide")


def lock_path(db: Path, run_name: str) -> Path:
    """Keyed on the store file itself: a symlink to it finds the same lock."""
    return sidecar_dir(db) / f"{run_name}.lock"


def take_lock(db: Path, run_name: str) -> IO[str]:
    """Hold the run's lock for the life of the process; a second engine is refused."""
    path = lock_path(db, run_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"run {run_name!r} is already being run by another engine "
                        f"(lock {path})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def engine_alive(db: Path, run_name: str) -> bool:
    """True when some engine holds the run's lock right now."""
    path = lock_path(db, run_name)
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class Host:
    """Hosts runs; one instance per engine process, used from one event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loops: dict[int, RunLoop] = {}
        self.tasks: dict[int, asyncio.Task[str]] = {}
        self.listeners: list[Callable[[], None]] = []
        self.results: dict[int, str] = {}
        self._locks: dict[int, IO[str]] = {}
        self._workspaces: dict[int, WorkspaceLock] = {}
        self._poller: asyncio.Task[None] | None = None
        #: Runs started or ended so far, and (newest command id, that) when every pending
        #: command was last applied.
        self._hosting = 0
        self.applied = 0  # commands applied (the headless printer reads them when it grows)
        self._commands_seen: tuple[int | None, int] | None = None
        #: Rung since the poller last looked, and what its wait for a ring is.
        self._rang = False
        self._ringing: asyncio.Future[None] | None = None
        # What an engine killed on this store left (evaluations, scratch), and this one's record.
        for note in leftovers.claim(store.path):
            self._report(note, level="warning")
        #: How many times each run told the host something changed: a listener that keeps
        #: the counts it saw reads only the runs that changed since, not every run.
        self.changes: dict[int, int] = {}
        self._recent: dict[int, int] = {}  # run → the sequence number of its last change
        self._seq = 0
        self.notifications = Notifications(store)  # the specs' `notify:` hooks
        self.libraries = Libraries(store)  # whose round is next in a library (scheduler.py)

    def notify(self) -> None:
        for listener in list(self.listeners):
            listener()

    def _run_changed(self, run_id: int) -> None:
        self.changes[run_id] = self.changes.get(run_id, 0) + 1
        self._seq += 1
        self._recent.pop(run_id, None)  # (to the end: the dict is in order of change)
        self._recent[run_id] = self._seq
        if run_id in self.notifications.watches:
            try:
                self.notifications.changed(self.loops[run_id])
            except Exception as exc:  # a hook must never stop a run
                self._report(f"notify: {exc!r}")
        self.notify()

    def changed_since(self, seen: dict[int, int]) -> list[int]:
        """The runs whose change count differs from `seen`, which is brought up to date.
        Only the runs that changed since the last call are looked at (newest first, up to
        the first one already seen), not every hosted run."""
        mark = seen.get(-1, 0)
        out = []
        for rid, seq in reversed(self._recent.items()):
            if seq <= mark:
                break
            if seen.get(rid) != self.changes[rid]:
                seen[rid] = self.changes[rid]
                out.append(rid)
        seen[-1] = self._seq
        out.reverse()
        return out

    # ------------------------------------------------------------ runs

    def add(self, spec: specs.Spec) -> RunLoop:
        """Create the run (or pick up the one with this name) and take its lock."""
        missing = redact.missing_env_from(spec)
        if missing:
            raise UserError(f"{spec.path}: workers: env_from: {', '.join(missing)} not set in "
                            "the engine's environment")
        # Values passed to workers that are secret are masked in all this store writes.
        self.store.add_secrets(redact.spec_secrets(spec))
        run = self.store.get_run(spec.name)
        spec_json = redact.redacted_spec_json(spec)
        if run is None:
            run_id = self.store.create_run(
                spec.name, spec_path=str(spec.path or ""), spec_json=spec_json,
                workspace=str(spec.workspace), direction=spec.direction, target=spec.target_score)
        else:
            run_id = run["id"]
            # A finished loop may be started again (it resumes); a going one may not.
            if run_id in self.loops and not (run_id in self.tasks and self.tasks[run_id].done()):
                raise UserError(f"run {spec.name!r} is already running here")
        lock = take_lock(self.store.path, spec.name)
        try:
            held = take_workspace(spec.workspace, spec.target.files, self.store.path, spec.name)
        except BaseException:
            lock.close()
            raise
        try:
            self.store.update_run(run_id, spec_json=spec_json, spec_path=str(spec.path or ""),
                                  workspace=str(spec.workspace), direction=spec.direction,
                                  target=spec.target_score, engine_pid=os.getpid(),
                                  heartbeat=time.time(), status="starting", stop_reason=None)
            loop = RunLoop(spec, self.store, run_id,
                           notify=lambda: self._run_changed(run_id))
        except BaseException:
            held.release()
            lock.close()
            raise
        self._locks[run_id] = lock
        self._workspaces[run_id] = held
        self.loops[run_id] = loop
        self.notifications.watch(run_id, spec)
        self.libraries.join(loop)
        return loop

    def start(self, loop: RunLoop) -> asyncio.Task[str]:
        watch_children_with_pidfds()  # no thread per evaluation (engine/workers/childwatch.py)
        freeze_imports()  # full collections would walk every imported module
        task = asyncio.create_task(self._drive(loop), name=f"run:{loop.spec.name}")
        self.tasks[loop.run_id] = task
        self._hosting += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_commands(), name="commands")
            self.store.checkpoint_in_background()
        return task

    async def _drive(self, loop: RunLoop) -> str:
        try:
            reason = await loop.run()
        except BaselineFailed as exc:
            reason = str(exc)
            self.store.update_run(loop.run_id, status="failed", stop_reason=reason)
        except UserError as exc:
            reason = str(exc)
            self.store.update_run(loop.run_id, status="failed", stop_reason=reason,
                                  engine_pid=None)
        finally:
            self.libraries.leave(loop)
            held = self._workspaces.pop(loop.run_id, None)
            if held:
                held.release()
            lock = self._locks.pop(loop.run_id, None)
            if lock:
                lock.close()
            self._run_changed(loop.run_id)
            self._hosting += 1
            close = getattr(loop.mutator, "close", None)  # (a model mutator's connections)
            if close is not None:
                try:
                    await close()
                except Exception as exc:  # noqa: BLE001 - the run is over; say so and go on
                    self._report(f"[{loop.spec.name}] closing the mutator: {exc!r}",
                                 level="warning")
        self.results[loop.run_id] = reason
        return reason

    async def run_until_done(self) -> dict[int, str]:
        """Start every added run and wait for all of them to stop."""
        for loop in self.loops.values():
            if loop.run_id not in self.tasks:
                self.start(loop)
        try:
            # Runs may join while others run (a library's new files): wait for those too.
            while pending := [t for t in self.tasks.values() if not t.done()]:
                await asyncio.gather(*pending, return_exceptions=False)
        finally:
            await self.close()
        return self.results

    def stop_all(self) -> None:
        for loop in self.loops.values():
            self._stop(loop)

    def _stop(self, loop: RunLoop) -> None:
        loop.stopping = True
        loop.wake()
        self.libraries.wake(loop)
        loop.cancel_wave()

    async def close(self) -> None:
        await self.notifications.close()
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except (asyncio.CancelledError, sqlite3.Error, OSError):
                pass
            self._poller = None
        self.store.stop_checkpoints()

    # ------------------------------------------------------------ commands

    def prune(self) -> None:
        """The specs' `retention:`: old reverted experiments' results and files go."""
        for run_id, loop in self.loops.items():
            kept = loop.spec.retention
            if kept is not None:
                retention.prune(self.store.conn, run_id, kept.keep_days, kept.max_reverted)

    def _rung(self) -> None:
        self._rang = True
        if self._ringing is not None and not self._ringing.done():
            self._ringing.set_result(None)

    async def _ring_or_beat(self, period: float) -> None:
        """Until this engine is rung (at once if it was since the last wait), or the next
        multiple of `period` (engine/cadence.py)."""
        if not self._rang:
            loop = asyncio.get_running_loop()
            ringing = self._ringing = loop.create_future()
            timer = loop.call_later(cadence.until_beat(period),
                                    lambda: ringing.done() or ringing.set_result(None))
            try:
                await ringing
            finally:
                timer.cancel()
                self._ringing = None
        self._rang = False

    async def _poll_commands(self) -> None:
        unlisten = bell.listen(self._rung)
        period = COMMAND_POLL_S if unlisten is not None else UNRUNG_POLL_S
        try:
            pruned = time.monotonic()
            while True:
                try:
                    if time.monotonic() - pruned >= retention.PRUNE_EVERY_S:
                        pruned = time.monotonic()
                        self.prune()
                    await self.apply_commands()
                    for run_id, loop in self.loops.items():
                        if loop.ledger.unwritten() and run_id in self.tasks \
                                and not self.tasks[run_id].done():
                            loop.flush_events()
                except (sqlite3.Error, OSError) as exc:
                    if not storage_trouble(exc):
                        self._report(f"command poller: {exc!r}")
                    else:  # a full disk or read-only store: the runs pause and say so
                        for run_id, loop in self.loops.items():
                            if run_id in self.tasks and not self.tasks[run_id].done():
                                loop.storage.trip(exc)
                except Exception as exc:  # the poller must outlive one bad command
                    self._report(f"command poller: {exc!r}")
                await self._ring_or_beat(period)
        finally:
            if unlisten is not None:
                unlisten()

    def _report(self, line: str, level: str = "error") -> None:
        try:
            self.store.add_event(None, line, level=level)
        except (sqlite3.Error, OSError):
            pass

    async def apply_commands(self) -> None:
        # The pending commands are read when a command came or the hosted runs changed
        # since they were last all applied (the newest id is one lookup; the read, five
        # times a second, was most of the poller's cost).
        newest = self.store.conn.execute("SELECT MAX(id) FROM commands").fetchone()[0]
        key = (newest, self._hosting)
        if key == self._commands_seen:
            return
        active = [rid for rid, task in self.tasks.items() if not task.done()]
        for command in self.store.pending_commands(active):
            result = await self.apply(command)
            self.store.mark_applied(command["id"], result)
            self.store.add_event(command["run_id"], f"{command['verb']}: {result}",
                                 source="steering")
            self.applied += 1
            self.notify()
        self._commands_seen = key

    async def apply(self, command: dict) -> str:
        """Apply one steering command to its run; returns what happened, for the UI."""
        verb = command["verb"]
        targets = [self.loops[command["run_id"]]] if command["run_id"] in self.loops else (
            list(self.loops.values()) if command["run_id"] is None else [])
        if not targets:
            return "no such run in this engine"
        if verb not in VERBS:
            return f"unknown command {verb!r}"
        results = []
        for loop in targets:
            if verb == "pause":
                loop.paused = True
                self.store.update_run(loop.run_id, status="paused")
                results.append("paused")
            elif verb == "resume":
                loop.paused = False
                loop.wake()
                self.store.update_run(loop.run_id, status="running", stop_reason=None)
                results.append("resumed")
            elif verb == "stop":
                self._stop(loop)
                results.append("stopping")
            elif verb == "veto":
                results.append(await loop.veto(command["target"]))
                self.libraries.vetoed(loop)
            elif verb == "pin":
                if command["target"] is None:
                    results.append("pin needs an experiment")
                else:
                    results.append(await loop.pin(command["target"]))
            elif verb == "guide":
                results.append("guidance noted for the next proposals"
                               if getattr(loop.mutator, "reads_guidance", True) else
                               IGNORED_GUIDANCE.format(kind=loop.spec.mutator.kind))
        return "; ".join(results)
