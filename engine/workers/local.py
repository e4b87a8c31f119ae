"""Local worker slots: run commands in the candidate's own folder on this machine.

Each command runs in a new process group, so a timeout kills everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import BinaryIO

from engine.model import CommandResult, LineSink
from engine.workers.deadline import within
from engine.workers.output import OutputTail
from engine.workers.process import Running


def _with_environment(env: dict[str, str]) -> dict[bytes, bytes]:
    """This process's environment with `env` over it, as the bytes the child gets. Read from
    os.environ's own bytes (`_data`, what os.environ[...] = ... also writes): going through
    the str mapping decodes every variable, then subprocess encodes each again (~50 µs a
    command, a fortieth of a millisecond round: bench/engine_overhead.py)."""
    data = getattr(os.environ, "_data", None)
    base = dict(data) if isinstance(data, dict) else {
        os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    base.update((os.fsencode(k), os.fsencode(v)) for k, v in env.items())
    return base


def _group_members(pgid: int) -> int:
    """How many processes are in this process group now (0 when none; Linux reads /proc,
    elsewhere 1 stands for "some")."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 1
    count = 0
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
                count += 1
    return count or 1


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_leftovers(pgid: int) -> int:
    """Kill what a command that exited left running in its group; how many there were."""
    count = _group_members(pgid)
    _kill_group(pgid)
    return count


async def run_local(command: str, cwd: Path, *, timeout: float, stdin: str | None = None,
                    env: dict[str, str] | None = None,
                    on_line: LineSink | None = None) -> CommandResult:
    """Run a shell command with a timeout that kills its whole process group.

    The command is over when its process exits, even if processes it started still hold its
    output open: those are killed (and the output says so). It starts before the first await
    (engine/workers/process.py), so a cancellation never leaves it running unseen.
    """
    started = time.monotonic()
    tail = OutputTail(on_line)
    running = Running(command, cwd, _with_environment(env) if env else None, stdin, tail,
                      _kill_leftovers)
    timed_out = False
    try:
        with within(timeout):  # (asyncio.timeout, without a timer handle a command)
            await running.eof
            await running.exited
    except TimeoutError:
        timed_out = True
    finally:
        running.close()
        # Whatever happened (timeout, cancellation), nothing the command started survives it.
        _kill_group(running.pid)
        if not running.exited.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(running.exited), 5)
    if running.leftovers:
        n = running.leftovers
        tail.feed(f"\n[autoresearch] the command exited but left {n} process"
                  f"{'es' if n > 1 else ''} running (holding its output): killed\n")
    tail.close()
    return CommandResult(
        exit_code=None if timed_out else running.returncode, output=tail.text(),
        timed_out=timed_out, duration=time.monotonic() - started, truncated=tail.truncated)


class LocalSession:
    """A candidate folder on this machine."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.env = env or {}

    async def __aenter__(self) -> LocalSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, command: str, *, timeout: float, stdin: str | None = None,
                  env: dict[str, str] | None = None,
                  on_line: LineSink | None = None) -> CommandResult:
        return await run_local(command, self.folder, timeout=timeout, stdin=stdin,
                               env={**self.env, **(env or {})}, on_line=on_line)

    async def read_file(self, relpath: str) -> bytes | None:
        handle = self.open_file(relpath)
        if handle is None:
            return None
        with handle:
            return handle.read()

    def open_file(self, relpath: str) -> BinaryIO | None:
        """The file, open for reading as a stream (a big report need not fit in memory)."""
        path = (self.folder / relpath).resolve()
        if not path.is_relative_to(self.folder.resolve()) or not path.is_file():
            return None
        return open(path, "rb")  # noqa: SIM115 - the caller closes it


class LocalWorker:
    """One local slot."""

    def __init__(self, name: str, group: str = "default") -> None:
        self.name = name
        self.group = group

    def open(self, candidate: Path) -> LocalSession:
        """The session, as its own async context manager (nothing to set up or tear down)."""
        return LocalSession(candidate)
