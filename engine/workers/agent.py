"""The engine's side of a host's job agent (remote_agent.py): one per SSH connection.

A job is a line of JSON down the agent's stdin instead of a channel with its own login
shell, so a job costs the host one `sh` and the engine a few packets. Frames coming back
go to per-request handlers straight from asyncssh's data callback. If the agent cannot
start (no python3 on the host) the host keeps using a channel per job (ssh.py's shell path).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import itertools
import json
import shlex
from collections.abc import Callable
from pathlib import Path

import asyncssh

#: The interpreter the agent runs under on the host.
PYTHON = "python3"
#: Seconds the agent may take to start and say hello (a cold, busy host imports slowly).
HELLO_TIMEOUT_S = 30.0

#: Receives a request's frames as they arrive: (kind, payload); kind b"lost" means the agent
#: or its connection is gone (no more frames will come).
Handler = Callable[[bytes, bytes], None]


@functools.cache
def _source() -> str:
    return Path(__file__).with_name("remote_agent.py").read_text()


class AgentGone(Exception):
    """The agent stopped answering: its process or its connection ended."""


class _Channel(asyncssh.SSHClientSession[bytes]):
    """The agent's channel: frames are cut out of its stdout in asyncssh's callback and
    handed straight to their request's handler (no reader task, no per-frame awaits)."""

    def __init__(self) -> None:
        self.agent: RemoteAgent | None = None
        self.hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if datatype is not None:  # stderr: the agent's goes to /dev/null anyway
            return
        buffer = self._buffer
        buffer += data
        if not self.hello.done():  # a chatty login shell may print before the agent does
            at = buffer.find(b"0 hello ")
            if at < 0:
                del buffer[:-8]
                return
            del buffer[:at]
        try:
            while (end := buffer.find(b"\n")) >= 0:
                job, kind, size = bytes(buffer[:end]).split()
                stop = end + 1 + int(size)
                if len(buffer) < stop:
                    break
                payload = bytes(buffer[end + 1:stop])
                del buffer[:stop]
                self._dispatch(int(job), kind, payload)
        except ValueError:
            self._lose(AgentGone("the job agent on the host sent garbage"))

    def _dispatch(self, job: int, kind: bytes, payload: bytes) -> None:
        if job == 0 and kind == b"hello":
            if not self.hello.done():
                self.hello.set_result(None)
        elif self.agent is not None and (handler := self.agent.jobs.get(job)) is not None:
            handler(kind, payload)

    def eof_received(self) -> bool:
        self._lose(AgentGone("the job agent on the host stopped"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(exc or AgentGone("the job agent on the host stopped"))

    def _lose(self, exc: BaseException) -> None:
        if not self.hello.done():
            self.hello.set_exception(AgentGone(str(exc)))
            self.hello.exception()  # retrieved: start() may have stopped waiting
        if self.agent is not None:
            self.agent.lose(exc)


class RemoteAgent:
    """A running agent: submit requests, get their frames, ask for kills."""

    def __init__(self, chan: asyncssh.SSHClientChannel[bytes], session: _Channel) -> None:
        self.chan = chan
        self.jobs: dict[int, Handler] = {}
        self._ids = itertools.count(1)
        self.lost: BaseException | None = None
        session.agent = self

    @classmethod
    async def start(cls, conn: asyncssh.SSHClientConnection) -> RemoteAgent | None:
        """Start an agent on `conn`; None when the host cannot run it. Transport errors
        propagate (asyncssh.Error, OSError)."""
        # stderr goes nowhere: nothing reads it, and a full window would stall the channel.
        command = f"exec {PYTHON} -I -c {shlex.quote(_source())} 2>/dev/null"
        chan, session = await conn.create_session(_Channel, f"sh -c {shlex.quote(command)}",
                                                  encoding=None)
        try:
            await asyncio.wait_for(asyncio.shield(session.hello), HELLO_TIMEOUT_S)
        except (TimeoutError, AgentGone):
            chan.close()
            if conn.is_closed():  # the connection failed, not the agent: try again later
                raise asyncssh.ConnectionLost("connection lost") from None
            return None
        return cls(chan, session)

    def lose(self, exc: BaseException) -> None:
        """The agent is gone: every request still waiting hears so, once."""
        if self.lost is not None:
            return
        self.lost = exc
        jobs, self.jobs = self.jobs, {}
        for handler in jobs.values():
            handler(b"lost", b"")

    def submit(self, op: str, handler: Handler, *, root: str, workdir: str,
               archive: tuple[bytes, bool] | None = None, **fields: object) -> int:
        """Send a request (`run` or `read`, see remote_agent.py) for the candidate folder
        `root`, with its archive if this is the candidate's first; `handler` gets its
        frames until `forget`."""
        if self.lost is not None:
            raise AgentGone(str(self.lost) or "the job agent on the host stopped")
        job = next(self._ids)
        request = {"op": op, "id": job, "root": root, "workdir": workdir, "archive": None,
                   **fields}
        if archive is not None:
            data, gzipped = archive
            # Always compressed here (zlib in-process at both ends, no gzip process): tar pads
            # even a tiny candidate to 10 kB, which would take two SSH packets.
            request["archive"] = base64.b64encode(
                data if gzipped else gzip.compress(data, compresslevel=1)).decode()
        self.jobs[job] = handler
        self.chan.write(json.dumps(request).encode() + b"\n")
        return job

    def kill(self, job: int, grace: float) -> None:
        """Ask for a job's process group to end: SIGTERM, `grace` seconds, SIGKILL."""
        if self.lost is None:
            request = {"op": "kill", "id": job, "grace": grace}
            self.chan.write(json.dumps(request).encode() + b"\n")

    def forget(self, job: int) -> None:
        self.jobs.pop(job, None)

    def close(self) -> None:
        """End the agent's stdin: it kills whatever still runs and exits."""
        if self.lost is None:
            try:
                self.chan.write_eof()
            except (OSError, asyncssh.Error):
                pass
        self.lose(AgentGone("the job agent was closed"))
