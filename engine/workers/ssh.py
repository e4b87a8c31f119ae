"""SSH worker slots: evaluations on remote hosts over asyncssh.

A spec's `ssh` worker names a host (an alias from `~/.ssh/config` — a SkyPilot cluster
name works — or `user@host:port`) and a number of slots. The slots of a host share its
connections (one per SLOTS_PER_CONNECTION slots, since OpenSSH serves 10 sessions per
connection by default); every job is a channel. Per candidate:

    upload   the staged copy, as one tar stream over a channel, into a fresh remote folder
    run      each command in a new session (setsid): its output streams back line by line,
             and a timeout or a stop kills the remote process group, not just the channel
    read     result files with `cat`, confined to the folder
    clean    the folder is removed; if the connection died, on the next connection

Host keys are checked against known_hosts; an unknown host is refused unless the spec sets
`trust_unknown_host` (then its key is learned, as `StrictHostKeyChecking accept-new` does);
a changed key is always refused. SSH keepalives are the heartbeat that catches a silent hang.
Transport problems raise WorkerFailed (retry elsewhere); a command's own failure is a result.
"""

from __future__ import annotations

import asyncio
import codecs
import io
import itertools
import re
import secrets
import shlex
import signal
import socket
import tarfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath

import asyncssh

from engine import spec as specs
from engine.model import CommandResult, LineSink
from engine.workers.faults import WorkerFailed
from engine.workers.output import OutputTail

#: Slots served by one SSH connection (OpenSSH's MaxSessions defaults to 10 channels).
SLOTS_PER_CONNECTION = 4
#: Keepalives missed before a connection counts as hung.
KEEPALIVE_COUNT = 3
#: Time allowed for upload, cleanup and other housekeeping commands.
CONTROL_TIMEOUT_S = 120.0
#: Seconds a killed job gets between SIGTERM (lets `srun` cancel its step) and SIGKILL.
KILL_GRACE_S = 2.0
READ_CHUNK = 65_536
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Kill a job's process group: wait briefly for the group id (a job killed the moment it
# starts may not have written it yet), SIGTERM, a grace period, then SIGKILL.
_KILL = """f={pgid}; i=0
while [ ! -s "$f" ] && [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done
pg=$(cat "$f" 2>/dev/null) || exit 0
kill -s TERM -- -"$pg" 2>/dev/null || exit 0
i=0; while kill -s 0 -- -"$pg" 2>/dev/null && [ $i -lt {grace} ]; do sleep 0.1; i=$((i+1)); done
kill -s KILL -- -"$pg" 2>/dev/null; exit 0"""

# Kill what is left of abandoned jobs (their connection died) and remove their folders.
_CLEAN = """for d in {folders}; do
  for f in "$d"/ctl/*.pgid; do [ -s "$f" ] && kill -s KILL -- -"$(cat "$f")" 2>/dev/null; done
  rm -rf "$d"
done; exit 0"""


def parse_target(host: str) -> tuple[str | None, str, int | None]:
    """`user@host:port` → (user, host, port); a bare alias → (None, alias, None)."""
    user, _, rest = host.rpartition("@")
    port: int | None = None
    if rest.startswith("[") and "]" in rest:  # [::1]:2222
        name, _, tail = rest[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
        rest = name
    elif rest.count(":") == 1 and rest.rsplit(":", 1)[1].isdigit():
        rest, port_text = rest.rsplit(":", 1)
        port = int(port_text)
    return user or None, rest, port


def job_script(command: str, folder: str, pgid_file: str, env: dict[str, str],
               launcher: str = "") -> str:
    """The remote command line for one job.

    The job runs in its own session (`setsid`), so its process group holds everything it
    starts and one `kill -- -PGID` ends all of it. The wrapper shell waits for it and exits
    with its status; stdin passes through fd 3 since a background job's stdin is /dev/null.
    """
    exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in env.items())
    prefix = f"{launcher.strip()} " if launcher.strip() else ""
    inner = (f"echo $$ > {pgid_file}; cd {folder} || exit 126; {exports}"
             f"exec {prefix}sh -c {shlex.quote(command)}")
    outer = f"exec 3<&0; setsid sh -c {shlex.quote(inner)} <&3 3<&- & wait $!"
    return f"sh -c {shlex.quote(outer)}"


def pack(folder: Path) -> bytes:
    """The staged copy as a gzipped tar (owners cleared: the remote user owns what it unpacks)."""

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name, filter=anonymous)
    return buffer.getvalue()


class _Client(asyncssh.SSHClient):
    """Decides on host keys that known_hosts does not already trust."""

    def __init__(self, known_file: Path, trust_unknown: bool) -> None:
        self.known_file = known_file
        self.trust_unknown = trust_unknown
        self.refusal = ""
        self.learned = ""

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        # asyncssh asks only about keys known_hosts does not list for this host.
        listed: tuple = ((),)
        if self.known_file.is_file():
            listed = asyncssh.read_known_hosts(str(self.known_file)).match(host, addr, port)
        if listed[0]:
            self.refusal = "changed"
            return False
        if not self.trust_unknown:
            self.refusal = "unknown"
            return False
        pattern = host if port == 22 else f"[{host}]:{port}"
        self.known_file.parent.mkdir(parents=True, exist_ok=True)
        with self.known_file.open("a") as handle:
            handle.write(f"{pattern} {key.export_public_key().decode().strip()}\n")
        self.learned = key.get_fingerprint()
        return True


class SSHHost:
    """One spec `ssh` entry: its connections (shared by its slots) and its housekeeping."""

    def __init__(self, config: specs.SSHWorker) -> None:
        self.config = config
        self.user, self.hostname, self.port = parse_target(config.host)
        #: Shown in slot names: `gpu-box:2`, `10.0.0.5:2222:1`.
        self.label = config.host.rpartition("@")[2]
        count = -(-config.slots // SLOTS_PER_CONNECTION)
        self._conns: list[asyncssh.SSHClientConnection | None] = [None] * count
        self._locks = [asyncio.Lock() for _ in range(count)]
        #: Remote job folders whose connection died: cleaned on the next connection.
        self.orphans: set[str] = set()
        #: Things worth telling the user once (a host key learned).
        self.notes: list[str] = []
        self.closed = False
        self._workdir: str | None = None
        self._removals: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ connections

    def _options(self) -> asyncssh.SSHClientConnectionOptions:
        cfg = self.config
        kwargs: dict = {
            "connect_timeout": cfg.connect_timeout_s,
            "keepalive_interval": cfg.heartbeat_s,
            "keepalive_count_max": KEEPALIVE_COUNT,
        }
        if cfg.ssh_config:
            kwargs["config"] = [str(Path(cfg.ssh_config).expanduser())]
        if cfg.known_hosts:
            kwargs["known_hosts"] = str(Path(cfg.known_hosts).expanduser())
        if cfg.identity:
            kwargs["client_keys"] = [str(Path(cfg.identity).expanduser())]
        if self.user:
            kwargs["username"] = self.user
        if self.port:
            kwargs["port"] = self.port
        return asyncssh.SSHClientConnectionOptions(host=self.hostname, **kwargs)

    def _known_file(self, options: asyncssh.SSHClientConnectionOptions) -> Path:
        known = options.known_hosts
        if isinstance(known, str):
            return Path(known).expanduser()
        if isinstance(known, list | tuple) and known and isinstance(known[0], str):
            return Path(known[0]).expanduser()
        return Path("~/.ssh/known_hosts").expanduser()

    async def connection(self, index: int) -> asyncssh.SSHClientConnection:
        """Connection `index`, opened (or reopened after a drop) on first use."""
        if self.closed:
            raise WorkerFailed("the run is shutting down")
        async with self._locks[index]:
            conn = self._conns[index]
            if conn is not None and not conn.is_closed():
                return conn
            self._conns[index] = None
            conn = await self._connect()
            self._conns[index] = conn
            if self.orphans:
                await self._clean(conn, sorted(self.orphans))
            return conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        where = self.config.host
        try:
            options = self._options()
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise WorkerFailed(f"{where}: bad SSH settings: {exc}", permanent=True) from None
        known_file = self._known_file(options)
        if self.config.trust_unknown_host and not known_file.exists() and self.config.known_hosts:
            known_file.parent.mkdir(parents=True, exist_ok=True)
            known_file.touch()
        client = _Client(known_file, self.config.trust_unknown_host)
        target = f"{options.host}:{options.port or 22}"
        try:
            conn = await asyncssh.connect(options.host, options=options,
                                          client_factory=lambda: client)
        except asyncssh.HostKeyNotVerifiable:
            if client.refusal == "changed":
                raise WorkerFailed(
                    f"{where}: HOST KEY CHANGED — it does not match {known_file}; refusing to "
                    "connect (if the host was really reinstalled, remove its old line)",
                    permanent=True) from None
            port = f"-p {options.port} " if options.port and options.port != 22 else ""
            raise WorkerFailed(
                f"{where}: unknown host key ({target} is not in {known_file}); add it with "
                f"`ssh-keyscan {port}{options.host} >> {known_file}`, or set "
                "`trust_unknown_host: true` for this worker", permanent=True) from None
        except asyncssh.PermissionDenied:
            raise WorkerFailed(f"{where}: authentication refused for {options.username}@{target} "
                               "(check `identity`, your SSH agent, and authorized_keys)",
                               permanent=True) from None
        except socket.gaierror as exc:
            raise WorkerFailed(f"{where}: cannot resolve {options.host}: {exc.strerror}",
                               permanent=True) from None
        except ConnectionRefusedError:
            raise WorkerFailed(f"{where}: connection refused by {target}") from None
        except TimeoutError:
            raise WorkerFailed(f"{where}: no answer from {target} within "
                               f"{self.config.connect_timeout_s:g}s") from None
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise WorkerFailed(f"{where}: cannot use the identity key: {exc}",
                               permanent=True) from None
        except (OSError, asyncssh.Error) as exc:
            raise WorkerFailed(f"{where}: cannot connect to {target}: {describe(exc)}") from None
        if client.learned:
            self.notes.append(f"{where}: trusted a new host key {client.learned} "
                              f"(added to {known_file})")
        return conn

    def drop(self, conn: asyncssh.SSHClientConnection) -> None:
        """Forget a connection that failed, so the next job reconnects."""
        for i, c in enumerate(self._conns):
            if c is conn:
                self._conns[i] = None
        conn.abort()

    async def _clean(self, conn: asyncssh.SSHClientConnection, folders: list[str]) -> None:
        script = _CLEAN.format(folders=" ".join(shlex.quote(f) for f in folders))
        try:
            await conn.run(f"sh -c {shlex.quote(script)}", check=False, timeout=CONTROL_TIMEOUT_S)
            self.orphans.difference_update(folders)
        except (OSError, asyncssh.Error, TimeoutError):
            pass

    async def close(self) -> None:
        self.closed = True
        if self._removals:
            await asyncio.wait(set(self._removals), timeout=CONTROL_TIMEOUT_S)
        for i, conn in enumerate(self._conns):
            if conn is not None:
                if self.orphans:
                    await self._clean(conn, sorted(self.orphans))
                conn.close()
                try:
                    await asyncio.wait_for(conn.wait_closed(), 5)
                except (TimeoutError, OSError, asyncssh.Error):
                    pass
                self._conns[i] = None

    # ------------------------------------------------------------ folders

    async def workdir(self, conn: asyncssh.SSHClientConnection) -> str:
        """The spec's remote working folder as an absolute path (`~` and relative paths are
        taken from the remote home, asked once)."""
        if self._workdir is None:
            path = self.config.workdir.rstrip("/") or "/"
            if not path.startswith("/"):
                try:
                    result = await conn.run('printf %s "$HOME"', check=False,
                                            timeout=CONTROL_TIMEOUT_S)
                except (OSError, asyncssh.Error, TimeoutError) as exc:
                    self.drop(conn)
                    raise WorkerFailed(f"{self.config.host}: {describe(exc)}") from None
                home = str(result.stdout or "").strip() or "."
                path = f"{home}/{path.removeprefix('~').lstrip('/')}".rstrip("/")
            self._workdir = path
        return self._workdir

    async def upload(self, conn: asyncssh.SSHClientConnection, root: str, data: bytes) -> None:
        q = shlex.quote
        script = f"mkdir -p {q(root)}/ws {q(root)}/ctl && tar -xzmof - -C {q(root)}/ws"
        try:
            result = await conn.run(f"sh -c {q(script)}", input=data, encoding=None,
                                    check=False, timeout=CONTROL_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            self.drop(conn)
            raise WorkerFailed(f"{self.config.host}: upload failed: {describe(exc)}") from None
        if result.exit_status != 0:
            err = (result.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
            raise WorkerFailed(f"{self.config.host}: cannot unpack the candidate in {root}: "
                               f"{err[0] if err else f'exit {result.exit_status}'}")

    def remove(self, conn: asyncssh.SSHClientConnection, root: str) -> None:
        """Remove a job folder in the background (the slot is free at once); if the
        connection is gone, after the next one."""

        async def work() -> None:
            try:
                await conn.run(f"rm -rf {shlex.quote(root)}", check=False,
                               timeout=CONTROL_TIMEOUT_S)
            except (OSError, asyncssh.Error, TimeoutError):
                self.orphans.add(root)

        task = asyncio.get_running_loop().create_task(work())
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)


def _signal_number(name: str) -> int:
    try:
        return signal.Signals[f"SIG{name}"].value
    except KeyError:
        return 1


def describe(exc: BaseException) -> str:
    """One line for a transport error, without secrets (asyncssh messages carry none)."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, asyncssh.ConnectionLost) or text == "Connection lost":
        return "connection lost"
    return text.splitlines()[0]


class SSHSession:
    """A candidate's folder on a remote host."""

    def __init__(self, host: SSHHost, conn: asyncssh.SSHClientConnection, root: str) -> None:
        self.host = host
        self.conn = conn
        self.root = root
        self.folder = f"{root}/ws"
        self._jobs = itertools.count(1)

    def _failed(self, exc: BaseException) -> WorkerFailed:
        self.host.drop(self.conn)
        return WorkerFailed(f"{self.host.config.host}: {describe(exc)}")

    async def run(self, command: str, *, timeout: float, stdin: str | None = None,
                  env: dict[str, str] | None = None,
                  on_line: LineSink | None = None) -> CommandResult:
        started = time.monotonic()
        full_env = {**self.host.config.env, **(env or {})}
        bad = [k for k in full_env if not _ENV_NAME.match(k)]
        if bad:
            return CommandResult(exit_code=127, output=f"invalid environment name {bad[0]!r}")
        pgid = f"{self.root}/ctl/{next(self._jobs)}.pgid"
        script = job_script(command, shlex.quote(self.folder), shlex.quote(pgid), full_env,
                            self.host.config.launcher)
        tail = OutputTail(on_line)
        try:
            proc = await self.conn.create_process(script, stderr=asyncssh.STDOUT, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            raise self._failed(exc) from None

        async def pump() -> None:
            if stdin is not None:
                proc.stdin.write(stdin.encode())
            proc.stdin.write_eof()
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            while chunk := await proc.stdout.read(READ_CHUNK):
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
            raise self._failed(exc) from None
        finally:
            if not finished:
                # A timeout, a stop or a broken connection: nothing the job started survives.
                await self._kill(pgid)
            proc.close()
        tail.close()
        status, killed_by = proc.exit_status, proc.exit_signal
        if not timed_out and status is None and killed_by is None:
            raise self._failed(asyncssh.ConnectionLost("Connection lost"))
        code = None if timed_out else status if status is not None else -_signal_number(killed_by[0])
        if killed_by is not None and not timed_out:
            tail.feed(f"[the remote shell was killed by SIG{killed_by[0]}]\n")
            tail.close()
        return CommandResult(exit_code=code, output=tail.text(), timed_out=timed_out,
                             duration=time.monotonic() - started, truncated=tail.truncated)

    async def _kill(self, pgid: str) -> None:
        script = _KILL.format(pgid=shlex.quote(pgid), grace=int(KILL_GRACE_S * 10))
        try:
            await asyncio.shield(self.conn.run(f"sh -c {shlex.quote(script)}", check=False,
                                               timeout=KILL_GRACE_S + 15))
        except (OSError, asyncssh.Error, TimeoutError):
            self.host.orphans.add(self.root)  # killed and removed on the next connection
        except asyncio.CancelledError:
            self.host.orphans.add(self.root)
            raise

    async def read_file(self, relpath: str) -> bytes | None:
        path = PurePosixPath(relpath)
        if path.is_absolute() or ".." in path.parts:
            return None
        target = shlex.quote(f"{self.folder}/{path}")
        try:
            result = await self.conn.run(f"cat -- {target}", encoding=None, check=False,
                                         timeout=CONTROL_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise self._failed(exc) from None
        return result.stdout if result.exit_status == 0 else None


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
        data = await asyncio.to_thread(pack, candidate)
        workdir = await self.host.workdir(conn)
        root = f"{workdir}/{candidate.name}-{secrets.token_hex(3)}"
        await self.host.upload(conn, root, data)
        try:
            yield SSHSession(self.host, conn, root)
        finally:
            self.host.remove(conn, root)

    async def close(self) -> None:
        await self.host.close()
