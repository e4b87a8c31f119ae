"""The engine's side of a host's job agent (remote_agent.py): one per SSH connection.

A job is a line of JSON down the agent's stdin instead of a channel with its own login
shell, so a job costs the host one `sh` and the engine a few packets. Frames coming back
are sorted into per-job queues by one reader task. If the agent cannot start (no python3
on the host) the host keeps using a channel per job (ssh.py's shell path).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import itertools
import json
import shlex
from pathlib import Path

import asyncssh

#: The interpreter the agent runs under on the host.
PYTHON = "python3"
#: Seconds the agent may take to start and say hello (a cold, busy host imports slowly).
HELLO_TIMEOUT_S = 30.0

#: A frame for a job: (kind, payload); kind b"lost" means the agent or connection is gone.
Frame = tuple[bytes, bytes]


@functools.cache
def _source() -> str:
    return Path(__file__).with_name("remote_agent.py").read_text()


class AgentGone(Exception):
    """The agent stopped answering: its process or its connection ended."""


class RemoteAgent:
    """A running agent: submit jobs, receive their frames, ask for kills."""

    def __init__(self, proc: asyncssh.SSHClientProcess) -> None:
        self.proc = proc
        self.jobs: dict[int, asyncio.Queue[Frame]] = {}
        self._ids = itertools.count(1)
        self.lost: BaseException | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, conn: asyncssh.SSHClientConnection) -> RemoteAgent | None:
        """Start an agent on `conn`; None when the host cannot run it. Transport errors
        propagate (asyncssh.Error, OSError)."""
        # stderr goes nowhere: an unread stderr would fill the channel's window and stall it.
        command = f"exec {PYTHON} -I -c {shlex.quote(_source())} 2>/dev/null"
        proc = await conn.create_process(f"sh -c {shlex.quote(command)}", encoding=None)
        try:
            header = await asyncio.wait_for(proc.stdout.readline(), HELLO_TIMEOUT_S)
            if header.startswith(b"0 hello "):
                await proc.stdout.readexactly(int(header.split()[2]))
                return cls(proc)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError):
            pass
        proc.close()
        return None

    async def _read(self) -> None:
        stdout = self.proc.stdout
        try:
            while header := await stdout.readline():
                job, kind, size = header.split()
                payload = await stdout.readexactly(int(size)) if size != b"0" else b""
                queue = self.jobs.get(int(job))
                if queue is not None:
                    queue.put_nowait((kind, payload))
            self._lose(AgentGone("the job agent on the host stopped"))
        except (OSError, asyncssh.Error, asyncio.IncompleteReadError, ValueError) as exc:
            self._lose(exc)

    def _lose(self, exc: BaseException) -> None:
        self.lost = exc
        for queue in self.jobs.values():
            queue.put_nowait((b"lost", b""))

    def submit(self, op: str, *, root: str, workdir: str,
               archive: tuple[bytes, bool] | None = None,
               **fields: object) -> tuple[int, asyncio.Queue[Frame]]:
        """Send a request (`run` or `read`, see remote_agent.py) for the candidate folder
        `root`, with its archive if this is the candidate's first; its frames arrive on the
        returned queue until `forget`."""
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
        queue: asyncio.Queue[Frame] = asyncio.Queue()
        self.jobs[job] = queue
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        return job, queue

    def kill(self, job: int, grace: float) -> None:
        """Ask for a job's process group to end: SIGTERM, `grace` seconds, SIGKILL."""
        if self.lost is None:
            request = {"op": "kill", "id": job, "grace": grace}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")

    def forget(self, job: int) -> None:
        self.jobs.pop(job, None)

    def close(self) -> None:
        """End the agent's stdin: it kills whatever still runs and exits."""
        if self.lost is None:
            try:
                self.proc.stdin.write_eof()
            except (OSError, asyncssh.Error):
                pass
        self._reader.cancel()
