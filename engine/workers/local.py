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
from typing import BinaryIO

from engine.model import CommandResult, LineSink
from engine.workers.output import OutputTail

READ_CHUNK = 1 << 20  # also the pipe buffer limit: fewer, larger reads of a flood


@functools.cache
def _devnull() -> int:
    """One /dev/null descriptor for every command's stdin (opening files is not free)."""
    return os.open(os.devnull, os.O_RDONLY)


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


#: After the command exits, how long its output may take to arrive before whatever it left
#: running (holding the pipe open) is killed.
EXIT_GRACE_S = 0.2


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


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's, plus: once the process has exited, whatever it left running that still
    holds its output open is killed after EXIT_GRACE_S (asyncio waits for the pipe's end)."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self._loop_ = loop
        self._grace: asyncio.TimerHandle | None = None
        #: Processes killed because they outlived the command holding its output.
        self.leftovers = 0
        self.reading = True

    def process_exited(self) -> None:
        super().process_exited()
        if self.reading:
            self._grace = self._loop_.call_later(EXIT_GRACE_S, self._kill_leftovers)

    def _kill_leftovers(self) -> None:
        self._grace = None
        pid = self._transport.get_pid() if self._transport is not None else None
        if self.reading and pid is not None:
            self.leftovers = _group_members(pid)
            _kill_group(pid)  # then the pipe closes and the read ends

    def close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def done_reading(self) -> None:
        self.reading = False
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None


async def _spawn(command: str, cwd: Path, env: dict[str, str] | None,
                 stdin: str | None) -> tuple[asyncio.subprocess.Process, _Protocol]:
    """Start the command; a cancellation that lands while it is being started still gets
    the process, kills its group and then propagates (asyncio would leave it running)."""
    loop = asyncio.get_running_loop()
    spawn = asyncio.ensure_future(loop.subprocess_shell(
        lambda: _Protocol(READ_CHUNK, loop), command, cwd=cwd,
        env=_with_environment(env) if env else None, start_new_session=True,
        stdin=asyncio.subprocess.PIPE if stdin is not None else _devnull(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT))
    try:
        transport, protocol = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        try:
            transport, protocol = await spawn
        except Exception:  # it did not start: nothing to kill
            raise asyncio.CancelledError from None
        _kill_group(transport.get_pid())
        transport.close()
        raise
    return asyncio.subprocess.Process(transport, protocol, loop), protocol


async def run_local(command: str, cwd: Path, *, timeout: float, stdin: str | None = None,
                    env: dict[str, str] | None = None,
                    on_line: LineSink | None = None) -> CommandResult:
    """Run a shell command with a timeout that kills its whole process group.

    The command is over when its process exits, even if processes it started still hold its
    output open: those are killed (and the output says so).
    """
    started = time.monotonic()
    proc, protocol = await _spawn(command, cwd, env, stdin)
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
            protocol.done_reading()
            await proc.wait()
    except TimeoutError:
        timed_out = True
    finally:
        protocol.done_reading()
        # Whatever happened (timeout, cancellation), nothing the command started survives it.
        _kill_group(proc.pid)
        try:
            if proc.returncode is None:
                await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            pass
        finally:
            if proc.returncode is None:  # (cancelled again while waiting, as an app quits)
                # Closed now, while the loop runs: left to the garbage collector, the
                # transport would close on a closed loop ("Event loop is closed").
                protocol.close_transport()
    if protocol.leftovers:
        n = protocol.leftovers
        tail.feed(f"\n[autoresearch] the command exited but left {n} process"
                  f"{'es' if n > 1 else ''} running (holding its output): killed\n")
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
