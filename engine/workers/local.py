"""Local worker slots: run commands in the candidate's own folder on this machine.

Each command runs in a new process group, so a timeout kills everything it started.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from pathlib import Path

from engine.model import CommandResult, LineSink
from engine.workers.output import OutputTail

READ_CHUNK = 1 << 20  # also the pipe buffer limit: fewer, larger reads of a flood


@functools.cache
def _devnull() -> int:
    """One /dev/null descriptor for every command's stdin (opening files is not free)."""
    return os.open(os.devnull, os.O_RDONLY)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_local(command: str, cwd: Path, *, timeout: float, stdin: str | None = None,
                    env: dict[str, str] | None = None,
                    on_line: LineSink | None = None) -> CommandResult:
    """Run a shell command with a timeout that kills its whole process group."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_shell(
        command, cwd=cwd, env={**os.environ, **env} if env else None, start_new_session=True,
        stdin=asyncio.subprocess.PIPE if stdin is not None else _devnull(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, limit=READ_CHUNK)
    tail = OutputTail(on_line)
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            if stdin is not None:
                try:
                    proc.stdin.write(stdin.encode())
                    await proc.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                proc.stdin.close()
            while chunk := await proc.stdout.read(READ_CHUNK):
                tail.feed(chunk.decode("utf-8", errors="replace"))
            await proc.wait()
    except TimeoutError:
        timed_out = True
    finally:
        # Whatever happened (timeout, cancellation), nothing the command started survives it.
        _kill_group(proc.pid)
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                pass
    tail.close()
    return CommandResult(
        exit_code=None if timed_out else proc.returncode, output=tail.text(),
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
        path = (self.folder / relpath).resolve()
        if not path.is_relative_to(self.folder.resolve()) or not path.is_file():
            return None
        return path.read_bytes()


class LocalWorker:
    """One local slot."""

    def __init__(self, name: str, group: str = "default") -> None:
        self.name = name
        self.group = group

    def open(self, candidate: Path) -> LocalSession:
        """The session, as its own async context manager (nothing to set up or tear down)."""
        return LocalSession(candidate)
