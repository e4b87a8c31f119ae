"""SSH worker slots: evaluations on remote hosts over asyncssh.

A spec's `ssh` worker names a host (an alias from `~/.ssh/config` — a SkyPilot cluster
name works — or `user@host:port`) and a number of slots; the slots share the host's
connections (sshhost.py). Commands go to the connection's job agent (agent.py) when the
host has one, else each is a channel of its own. Per candidate:

    send     the staged copy, as a tar with the first command (in its request to the agent,
             or ahead of its channel's stdin), unpacked into a fresh folder under the
             worker's `workdir` (no SFTP needed)
    run      each command in its own session (setsid) behind the worker's launcher and
             environment; its output streams back line by line as it arrives, and a timeout
             or a stop kills the remote process group, not just the channel
    read     result files with `cat`, confined to the folder
    clean    finished folders are removed in batches by a later job on the host, and all
             of them when the run ends

Transport problems raise WorkerFailed (the pool retries the evaluation elsewhere); whatever
the command itself does — fail, crash, run out of time — is a result.
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import re
import secrets
import shlex
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path, PurePosixPath

import asyncssh

from engine import spec as specs
from engine.model import CommandResult, LineSink
from engine.workers.agent import AgentGone, Handler, RemoteAgent
from engine.workers.faults import WorkerFailed
from engine.workers.output import OutputTail
from engine.workers.remote import (
    KILL,
    job_command,
    job_script,
    pack,
    parse_target,
    signal_number,
    upload_prelude,
)
from engine.workers.sshhost import CONTROL_TIMEOUT_S, SLOTS_PER_CONNECTION, SSHHost, describe

__all__ = ["SSHHost", "SSHSession", "SSHWorker", "job_script", "parse_target"]

#: Seconds a killed job gets between SIGTERM (lets `srun` cancel its step) and SIGKILL.
KILL_GRACE_S = 2.0
READ_CHUNK = 65_536
#: Candidates that packed faster than this are packed on the event loop next time: a
#: thread hop costs more than packing two small files, and it waits for the GIL.
INLINE_PACK_S = 0.002
#: Finished jobs' folders removed together (the rest go when the run ends).
LEFTOVER_BATCH = 8
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SSHSession:
    """A candidate's folder on a remote host. The folder is created by the first command
    (or file read); commands after it wait until it exists (a job agent needs no waiting:
    it takes a candidate's requests in order)."""

    def __init__(self, host: SSHHost, conn: asyncssh.SSHClientConnection, root: str,
                 payload: tuple[bytes, bool], agent: RemoteAgent | None = None) -> None:
        self.host = host
        self.conn = conn
        self.agent = agent
        self.root = root
        self.folder = f"{root}/ws"
        self._payload: tuple[bytes, bool] | None = payload
        self._ready: asyncio.Future[None] | None = None
        self._marker = f"__autoresearch_{secrets.token_hex(6)}_"
        self._jobs = itertools.count(1)

    @property
    def started(self) -> bool:
        """Whether anything may exist remotely for this session."""
        return self._payload is None

    def _failed(self, exc: BaseException) -> WorkerFailed:
        self.host.drop(self.conn)
        return WorkerFailed(f"{self.host.config.host}: {describe(exc)}")

    def _settle_upload(self, failure: WorkerFailed | None) -> None:
        if self._ready is None or self._ready.done():
            return
        if failure is None:
            self._ready.set_result(None)
        else:
            self._ready.set_exception(failure)
            self._ready.exception()  # retrieved: waiters, if any, still get it

    async def _wait_upload(self) -> None:
        if self._payload is not None:  # a file read before any command: send it on its own
            payload, self._payload = self._payload, None
            self._ready = asyncio.get_running_loop().create_future()
            try:
                await self.host.upload(self.conn, self.root, payload)
            except WorkerFailed as exc:
                self._settle_upload(exc)
                raise
            self._settle_upload(None)
        elif self._ready is not None:
            await asyncio.shield(self._ready)

    async def run(self, command: str, *, timeout: float, stdin: str | None = None,
                  env: dict[str, str] | None = None,
                  on_line: LineSink | None = None) -> CommandResult:
        started = time.monotonic()
        full_env = {**self.host.config.environment(), **(env or {})}
        bad = [k for k in full_env if not _ENV_NAME.match(k)]
        if bad:
            return CommandResult(exit_code=127, output=f"invalid environment name {bad[0]!r}")
        if self.agent is not None:
            return await self._run_agent(self.agent, command, timeout, stdin, full_env, on_line,
                                         started)
        prelude, archive = "", b""
        if self._payload is not None:  # this command carries the candidate's files
            (archive, gzipped), self._payload = self._payload, None
            self._ready = asyncio.get_running_loop().create_future()
            leftovers = self._take_leftovers()
            prelude = upload_prelude(self.host.workdir, len(archive), gzipped, self._marker,
                                     leftovers)
        else:
            await self._wait_upload()
        pgid = f"{self.root}/ctl/{next(self._jobs)}.pgid"
        script = job_script(command, shlex.quote(self.folder), shlex.quote(pgid), full_env,
                            self.host.config.launcher, prelude)
        tail = OutputTail(on_line)
        try:
            proc = await self.conn.create_process(script, stderr=asyncssh.STDOUT, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            failure = self._failed(exc)
            self._settle_upload(failure)
            raise failure from None
        ready_line = f"{self._marker}ready\n".encode()
        preamble = bytearray()

        async def pump() -> None:
            proc.stdin.write(archive + (stdin.encode() if stdin is not None else b""))
            proc.stdin.write_eof()
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            waiting = bool(prelude)
            while chunk := await proc.stdout.read(READ_CHUNK):
                if waiting:  # what precedes the marker is tar's, not the job's
                    preamble.extend(chunk)
                    at = preamble.find(ready_line)
                    if at < 0:
                        continue
                    chunk = bytes(preamble[at + len(ready_line):])
                    del preamble[at:]
                    waiting = False
                    self._settle_upload(None)
                tail.feed(decoder.decode(chunk))
            tail.feed(decoder.decode(b"", final=True))
            await proc.wait_closed()

        timed_out = finished = False
        try:
            await asyncio.wait_for(pump(), timeout)
            finished = True
        except TimeoutError:
            timed_out = True
        except (OSError, asyncssh.Error) as exc:
            failure = self._failed(exc)
            self._settle_upload(failure)
            raise failure from None
        finally:
            if not finished:
                # A timeout, a stop or a broken connection: nothing the job started survives.
                await self._kill(pgid)
            proc.close()
            if prelude:
                self._settle_upload(WorkerFailed(self._upload_problem(bytes(preamble))))
        if prelude and self._ready is not None and self._ready.exception() is not None:
            raise self._ready.exception()  # the candidate never arrived: not its fault
        tail.close()
        status, killed_by = proc.exit_status, proc.exit_signal
        if not timed_out and status is None and killed_by is None:
            raise self._failed(asyncssh.ConnectionLost("Connection lost"))
        code = None if timed_out else status if status is not None else -signal_number(
            killed_by[0])
        if killed_by is not None and not timed_out:
            tail.feed(f"[the remote shell was killed by SIG{killed_by[0]}]\n")
            tail.close()
        return CommandResult(exit_code=code, output=tail.text(), timed_out=timed_out,
                             duration=time.monotonic() - started, truncated=tail.truncated)

    def _take_leftovers(self) -> list[str]:
        """Finished jobs' folders go in batches: one removal per few jobs, not one each."""
        leftovers = sorted(self.host.leftovers) if len(
            self.host.leftovers) >= LEFTOVER_BATCH else []
        self.host.leftovers.difference_update(leftovers)
        return leftovers

    async def _run_agent(self, agent: RemoteAgent, command: str, timeout: float,
                         stdin: str | None, env: dict[str, str], on_line: LineSink | None,
                         started: float) -> CommandResult:
        """One command through the connection's job agent (see remote_agent.py). The agent
        takes a candidate's requests in order, so none waits for the files' upload."""
        script = job_command(command, shlex.quote(self.folder), env, self.host.config.launcher)
        tail = OutputTail(on_line)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        ended: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()

        def on_frame(kind: bytes, payload: bytes) -> None:
            if kind == b"out":
                tail.feed(decoder.decode(payload))
            elif not ended.done():  # exit, fail or lost: nothing follows
                ended.set_result((kind, payload))

        job = self._submit(agent, "run", on_frame, script=script, stdin=stdin,
                           pgid=f"{self.root}/ctl/{next(self._jobs)}.pgid")
        timed_out = False
        try:
            kind, payload = await asyncio.wait_for(asyncio.shield(ended), timeout)
        except TimeoutError:
            timed_out = True
        finally:
            if not ended.done():  # a timeout or a stop: nothing the job started survives
                await self._stop(agent, job, ended)
            agent.forget(job)
        if not timed_out and kind != b"exit":
            raise self._agent_failure(agent, kind, payload)
        tail.feed(decoder.decode(b"", final=True))
        tail.close()
        status = int(payload) if not timed_out else 0
        # A job ended by a signal reads as the shell's `wait` would report it: 128 + N.
        code = None if timed_out else status if status >= 0 else 128 - status
        return CommandResult(exit_code=code, output=tail.text(), timed_out=timed_out,
                             duration=time.monotonic() - started, truncated=tail.truncated)

    def _submit(self, agent: RemoteAgent, op: str, handler: Handler, **fields: object) -> int:
        """Send a request to the agent, with the candidate's files if not sent yet."""
        archive = leftovers = None
        if self._payload is not None:
            archive, self._payload = self._payload, None
            leftovers = self._take_leftovers()
        try:
            return agent.submit(op, handler, root=self.root, workdir=self.host.workdir,
                                archive=archive, leftovers=leftovers, **fields)
        except (OSError, asyncssh.Error, AgentGone) as exc:
            self.host.orphans.add(self.root)
            raise self._failed(exc) from None

    def _agent_failure(self, agent: RemoteAgent, kind: bytes, payload: bytes) -> WorkerFailed:
        """The WorkerFailed for a `fail` (files not unpacked) or `lost` frame."""
        if kind == b"fail":
            return WorkerFailed(f"{self.host.config.host}: cannot unpack the candidate: "
                                f"{payload.decode(errors='replace')}")
        self.host.orphans.add(self.root)  # killed and removed on reconnection
        return self._failed(agent.lost or AgentGone("the job agent stopped"))

    async def _read_agent(self, agent: RemoteAgent, path: str) -> bytes | None:
        answer: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()

        def on_frame(kind: bytes, payload: bytes) -> None:
            if not answer.done():
                answer.set_result((kind, payload))

        job = self._submit(agent, "read", on_frame, path=path)
        try:
            kind, payload = await asyncio.wait_for(answer, CONTROL_TIMEOUT_S)
        except TimeoutError:
            raise self._failed(TimeoutError(f"no answer to a file read within "
                                            f"{CONTROL_TIMEOUT_S:g}s")) from None
        finally:
            agent.forget(job)
        if kind in (b"file", b"nofile"):
            return payload if kind == b"file" else None
        raise self._agent_failure(agent, kind, payload)

    async def _stop(self, agent: RemoteAgent, job: int,
                    ended: asyncio.Future[tuple[bytes, bytes]]) -> None:
        """Have the agent kill a job's process group, and wait (bounded) until it has."""
        with self._orphaned_on_failure():
            agent.kill(job, KILL_GRACE_S)
            await asyncio.wait_for(asyncio.shield(ended), KILL_GRACE_S + 15)
            if ended.result()[0] != b"exit":
                self.host.orphans.add(self.root)

    def _upload_problem(self, preamble: bytes) -> str:
        text = preamble.decode(errors="replace").replace(f"{self._marker}failed", "").strip()
        where = self.host.config.host
        if text:
            return f"{where}: cannot unpack the candidate: {text.splitlines()[-1]}"
        return f"{where}: the candidate's files did not arrive"

    async def _kill(self, pgid: str) -> None:
        script = KILL.format(pgid=shlex.quote(pgid), grace=int(KILL_GRACE_S * 10))
        with self._orphaned_on_failure():
            result = await asyncio.shield(self.conn.run(
                f"sh -c {shlex.quote(script)}", check=False, timeout=KILL_GRACE_S + 15))
            if result.exit_status == 3:  # not started yet: it may still; clean up later
                self.host.orphans.add(self.root)

    @contextmanager
    def _orphaned_on_failure(self) -> Iterator[None]:
        """A kill that fails or is cut short leaves the job's folder (and whatever still runs
        there) to be killed and removed on the next connection."""
        try:
            yield
        except (OSError, asyncssh.Error, TimeoutError):
            self.host.orphans.add(self.root)
        except asyncio.CancelledError:
            self.host.orphans.add(self.root)
            raise

    async def read_file(self, relpath: str) -> bytes | None:
        path = PurePosixPath(relpath)
        if path.is_absolute() or ".." in path.parts:
            return None
        if self.agent is not None:
            return await self._read_agent(self.agent, f"{self.folder}/{path}")
        await self._wait_upload()
        target = shlex.quote(f"{self.folder}/{path}")
        try:
            result = await self.conn.run(f"cat -- {target}", encoding=None, check=False,
                                         timeout=CONTROL_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise self._failed(exc) from None
        return result.stdout if result.exit_status == 0 else None


def _timed_pack(candidate: Path, name: str) -> tuple[tuple[bytes, bool], float]:
    began = time.perf_counter()
    payload = pack(candidate, name)
    return payload, time.perf_counter() - began


class SSHWorker:
    """One slot on an SSH host."""

    def __init__(self, config: specs.SSHWorker, slot: int, host: SSHHost | None = None) -> None:
        self.host = host or SSHHost(config)
        self.config = config
        self.name = f"{self.host.label}:{slot}"
        self.group = config.group
        self.backoff_s = config.backoff_s
        #: Slots that fail together: a host's slots share its connections and its fate.
        self.fault_domain = f"ssh:{id(self.host)}"
        self._conn_index = (slot - 1) // SLOTS_PER_CONNECTION

    @asynccontextmanager
    async def open(self, candidate: Path) -> AsyncIterator[SSHSession]:
        conn = await self.host.connection(self._conn_index)
        name = f"{candidate.name}-{secrets.token_hex(3)}"
        if self.host.pack_inline:
            payload, took = _timed_pack(candidate, name)
        else:  # a big candidate (or the first): packed off the event loop
            payload, took = await asyncio.to_thread(_timed_pack, candidate, name)
        self.host.pack_inline = took < INLINE_PACK_S
        session = SSHSession(self.host, conn, f"{self.host.workdir}/{name}", payload,
                             self.host.agent(conn))
        try:
            yield session
        finally:
            if session.started:
                if conn.is_closed() or session.root in self.host.orphans:
                    self.host.orphans.add(session.root)
                else:
                    self.host.leftovers.add(session.root)

    async def warm_up(self) -> None:
        """Open this slot's connection ahead of its first job."""
        await self.host.connection(self._conn_index)

    async def close(self) -> None:
        await self.host.close()
