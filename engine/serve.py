"""`autoresearch-tui serve DIR`: host every spec in a folder, all day in the background.

On start every spec (`*.yaml`, `*.yml`) in the folder is hosted, which resumes each of its
runs where the store says it stopped. The folder is read again every few seconds: a new
spec joins, a changed one has its runs stopped after recording and started again from the
new text (they resume), a removed one has its runs stopped. A spec that does not load is
reported once per version (one line, on stderr and in the store's events) and skipped.
A library spec's new files join while it runs (engine/library.py).

The heartbeat: every hosted run's `heartbeat` field in the store (the app counts a run's
time on from it), and `.<store>.serve.json` beside the store: pid, folder, time, runs.
`attach` works on a served store from any terminal, as on any headless engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from engine import library
from engine.host import Host
from engine.model import UserError
from engine.spec import load_spec
from engine.store import Store
from engine.workspace import atomic_write

#: How often the folder is read again for new, changed and removed specs.
POLL_S = 3.0
#: How often the heartbeat is written.
HEARTBEAT_S = 10.0


def heartbeat_path(db: Path) -> Path:
    return db.parent / f".{db.name}.serve.json"


class Server:
    """Hosts the specs of one folder in one Host, following the folder's changes."""

    def __init__(self, db: Path, folder: Path, out: TextIO | None = None,
                 poll_s: float = POLL_S) -> None:
        out = out if out is not None else sys.stderr  # now's, not import's
        self.db, self.folder, self.out, self.poll_s = db, folder.resolve(), out, poll_s
        self.store = Store(db)
        self.host = Host(self.store)
        #: spec path → (digest of its text, its run ids, its library watcher task)
        self.hosted: dict[Path, tuple[str, list[int], asyncio.Task[None] | None]] = {}
        self.refused: dict[Path, str] = {}  # spec path → digest of the text that failed
        self.stopping = asyncio.Event()

    def say(self, line: str) -> None:
        print(f"serve: {line}", file=self.out, flush=True)

    @staticmethod
    def digest(path: Path) -> str | None:
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None

    def specs_now(self) -> dict[Path, str]:
        found = {}
        for path in sorted(self.folder.glob("*.y*ml")):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                digest = self.digest(path)
                if digest:
                    found[path] = digest
        return found

    async def scan(self) -> None:
        """Bring what is hosted in line with the folder."""
        now = self.specs_now()
        for path in [p for p in self.hosted if p not in now]:
            self.say(f"{path.name} removed: stopping its runs")
            await self.unhost(path)
        for path, digest in now.items():
            if path in self.hosted and self.hosted[path][0] == digest:
                continue
            if self.refused.get(path) == digest:
                continue
            if path in self.hosted:
                self.say(f"{path.name} changed: its runs restart with the new text")
                await self.unhost(path)
            self.host_spec(path, digest)

    def host_spec(self, path: Path, digest: str) -> None:
        try:
            spec = load_spec(path)
            runs = library.expand(spec)
            loops = [self.host.add(one) for one in runs]
        except UserError as exc:
            self.refused[path] = digest
            self.say(f"{exc}")
            self.host._report(f"serve: {exc}")
            return
        self.refused.pop(path, None)
        for loop in loops:
            self.host.start(loop)
        watcher = None
        if spec.target.each is not None:
            watcher = asyncio.create_task(library.LibraryWatcher(self.host, [spec]).run())
        self.hosted[path] = (digest, [loop.run_id for loop in loops], watcher)
        self.say(f"{path.name}: hosting {len(loops)} run(s)")

    async def unhost(self, path: Path) -> None:
        digest, run_ids, watcher = self.hosted.pop(path)
        if watcher is not None:
            watcher.cancel()
        spec_path = str(path)
        ids = set(run_ids) | {rid for rid, loop in self.host.loops.items()
                              if str(loop.spec.path) == spec_path}
        tasks = []
        for rid in ids:
            loop = self.host.loops.get(rid)
            if loop is not None:
                self.host._stop(loop)
            if rid in self.host.tasks:
                tasks.append(self.host.tasks[rid])
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for rid in ids:  # the host forgets them: the same names may be added again
            self.host.loops.pop(rid, None)
            self.host.tasks.pop(rid, None)
            self.host.notifications.watches.pop(rid, None)

    def beat(self) -> None:
        now = time.time()
        live = [rid for rid, task in self.host.tasks.items() if not task.done()]
        for rid in live:
            self.store.update_run(rid, heartbeat=now)
        atomic_write(heartbeat_path(self.db), json.dumps({
            "pid": os.getpid(), "folder": str(self.folder), "time": now,
            "specs": len(self.hosted), "runs": len(self.host.loops), "running": len(live)}))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        self.say(f"serving {self.folder} into {self.db} (Ctrl-C stops after recording)")
        last_beat = 0.0
        try:
            while not self.stopping.is_set():
                await self.scan()
                if time.monotonic() - last_beat >= HEARTBEAT_S:
                    self.beat()
                    last_beat = time.monotonic()
                try:
                    await asyncio.wait_for(self.stopping.wait(), self.poll_s)
                except TimeoutError:
                    pass
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            self.say("stopping: every run records what it has, then stops")
            for path in list(self.hosted):
                await self.unhost(path)
            await self.host.close()
            heartbeat_path(self.db).unlink(missing_ok=True)
            self.store.close()
        return 0


def cmd_serve(db: Path, folder: Path, poll_s: float = POLL_S) -> int:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder of specs")
    return asyncio.run(Server(db, folder, poll_s=poll_s).run())
