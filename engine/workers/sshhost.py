"""One SSH host of a spec: its connections, shared by its slots, and their housekeeping.

Connections open on first use and reopen after a drop; a host with many slots gets one
connection per SLOTS_PER_CONNECTION slots (OpenSSH serves 10 sessions per connection by
default). Host keys are checked against known_hosts: an unknown host is refused unless the
spec sets `trust_unknown_host` (then its key is learned, like `StrictHostKeyChecking
accept-new`); a changed key is always refused. Keepalives are the heartbeat that notices a
host gone silent. Every failure to reach the host is a WorkerFailed with a message for people.
Each connection also gets a job agent (agent.py) when the host has python3; jobs go to it.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
from pathlib import Path

import asyncssh

from engine import spec as specs
from engine.workers.agent import RemoteAgent
from engine.workers.faults import WorkerFailed
from engine.workers.remote import CLEAN, parse_target, unpack_command

#: Slots served by one SSH connection (without a job agent each job holds a channel or two;
#: with one, more connections spread the host's sshd work over its cores).
SLOTS_PER_CONNECTION = 4
#: Keepalives missed before a connection counts as hung.
KEEPALIVE_COUNT = 3
#: Time allowed for upload, cleanup and other housekeeping commands.
CONTROL_TIMEOUT_S = 120.0

try:  # asyncssh's default cipher order, to tell whether ssh_config chose ciphers itself
    from asyncssh.encryption import get_default_encryption_algs

    _DEFAULT_CIPHERS: list[bytes] = list(get_default_encryption_algs())
except ImportError:  # pragma: no cover - a future asyncssh
    _DEFAULT_CIPHERS = []
_PREFERRED = sorted(_DEFAULT_CIPHERS, key=lambda alg: not alg.startswith(b"aes128-gcm"))


def describe(exc: BaseException) -> str:
    """One line for a transport error, without secrets (asyncssh messages carry none)."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, asyncssh.ConnectionLost) or text == "Connection lost":
        return "connection lost"
    return text.splitlines()[0]


def _coalesce_sends(conn: asyncssh.SSHClientConnection) -> None:
    """One socket write per SSH packet instead of two: asyncssh sends an SSH_MSG_IGNORE
    ahead of every encrypted packet, each in a write of its own, so every job request woke
    the host's sshd twice. The two now leave together. This leans on asyncssh's internal
    `_send` (asyncssh 2.x); without it, nothing changes."""
    send, send_packet = getattr(conn, "_send", None), getattr(conn, "send_packet", None)
    if not callable(send) or not callable(send_packet):
        return
    pending: list[bytes] | None = None

    def batched_send(data: bytes) -> None:
        if pending is None:
            send(data)
        else:
            pending.append(data)

    def batched_send_packet(*args: object, **kwargs: object) -> None:
        nonlocal pending
        if pending is not None:  # the ignore packet, from inside the outer call
            send_packet(*args, **kwargs)
            return
        pending = []
        try:
            send_packet(*args, **kwargs)
        finally:
            data, pending = b"".join(pending), None
            if data:
                send(data)

    conn._send = batched_send  # type: ignore[method-assign]
    conn.send_packet = batched_send_packet  # type: ignore[method-assign]


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
        #: Each connection's job agent; None where the host cannot run one.
        self._agents: list[RemoteAgent | None] = [None] * count
        #: Set once a host turns out to have no agent (no python3): channels per job then.
        self.agentless = False
        self._locks = [asyncio.Lock() for _ in range(count)]
        #: Folders of abandoned jobs (their connection died): killed and removed on the
        #: next connection.
        self.orphans: set[str] = set()
        #: Folders of finished jobs: removed by the next job here, or when the run ends.
        self.leftovers: set[str] = set()
        #: Things worth telling the user once (a host key learned).
        self.notes: list[str] = []
        self.closed = False
        #: Whether candidates are small enough to pack without a thread (ssh.INLINE_PACK_S).
        self.pack_inline = False
        #: The remote working folder, absolute (known once connected).
        self.workdir = ""

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
        options = asyncssh.SSHClientConnectionOptions(host=self.hostname, **kwargs)
        if list(options.encryption_algs) == _DEFAULT_CIPHERS:
            # Same ciphers, AES-GCM first: one C call per packet with AES-NI, where asyncssh's
            # chacha20-poly1305 takes several Python calls (a quarter of the CPU per job).
            # A `Ciphers` line in the user's ssh_config is left alone.
            options = asyncssh.SSHClientConnectionOptions(
                options, encryption_algs=[alg.decode() for alg in _PREFERRED])
        return options

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
            await self._prepare(conn)
            if self.orphans:
                await self._clean(conn, sorted(self.orphans))
            self._agents[index] = await self._start_agent(conn)
            self._conns[index] = conn
            return conn

    async def _start_agent(self, conn: asyncssh.SSHClientConnection) -> RemoteAgent | None:
        if self.agentless:
            return None
        try:
            agent = await RemoteAgent.start(conn)
        except (OSError, asyncssh.Error) as exc:
            conn.abort()
            raise WorkerFailed(f"{self.config.host}: {describe(exc)}") from None
        self.agentless = agent is None
        return agent

    def agent(self, conn: asyncssh.SSHClientConnection) -> RemoteAgent | None:
        """The job agent on `conn`, if it has one."""
        for c, agent in zip(self._conns, self._agents, strict=True):
            if c is conn:
                return agent
        return None

    async def _connect(self) -> asyncssh.SSHClientConnection:
        where = self.config.host
        try:
            options = self._options()
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise WorkerFailed(f"{where}: bad SSH settings: {exc}", permanent=True) from None
        known_file = self._known_file(options)
        if self.config.known_hosts and not known_file.exists():
            if not self.config.trust_unknown_host:
                raise WorkerFailed(f"{where}: known_hosts file {known_file} does not exist",
                                   permanent=True)
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
        _coalesce_sends(conn)
        if client.learned:
            self.notes.append(f"{where}: trusted a new host key {client.learned} "
                              f"(added to {known_file})")
        return conn

    def drop(self, conn: asyncssh.SSHClientConnection) -> None:
        """Forget a connection that failed, so the next job reconnects."""
        for i, c in enumerate(self._conns):
            if c is conn:
                self._conns[i] = None
                agent, self._agents[i] = self._agents[i], None
                if agent is not None:
                    agent.close()
        conn.abort()

    async def _clean(self, conn: asyncssh.SSHClientConnection, folders: list[str]) -> None:
        script = CLEAN.format(folders=" ".join(shlex.quote(f) for f in folders))
        try:
            await conn.run(f"sh -c {shlex.quote(script)}", check=False, timeout=CONTROL_TIMEOUT_S)
            self.orphans.difference_update(folders)
        except (OSError, asyncssh.Error, TimeoutError):
            pass

    async def close(self) -> None:
        self.closed = True
        for i, conn in enumerate(self._conns):
            if conn is not None:
                self.orphans |= self.leftovers
                self.leftovers.clear()
                if self.orphans:
                    await self._clean(conn, sorted(self.orphans))
                agent, self._agents[i] = self._agents[i], None
                if agent is not None:
                    agent.close()  # it kills whatever still runs
                conn.close()
                try:
                    await asyncio.wait_for(conn.wait_closed(), 5)
                except (TimeoutError, OSError, asyncssh.Error):
                    pass
                self._conns[i] = None

    async def _prepare(self, conn: asyncssh.SSHClientConnection) -> None:
        """Once per connection: make the working folder and learn its absolute path."""
        path = self.config.workdir.rstrip("/") or "/"
        if path == "~" or path.startswith("~/"):
            quoted = '"$HOME"' + shlex.quote(path[1:]) if path != "~" else '"$HOME"'
        else:
            quoted = shlex.quote(path)  # a relative path is taken from the remote home
        script = f"mkdir -p {quoted} && cd {quoted} && pwd"
        try:
            result = await conn.run(f"sh -c {shlex.quote(script)}", check=False,
                                    timeout=CONTROL_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            conn.abort()
            raise WorkerFailed(f"{self.config.host}: {describe(exc)}") from None
        if result.exit_status != 0:
            conn.abort()
            problem = str(result.stderr or result.stdout or "").strip().splitlines()[-1:]
            raise WorkerFailed(f"{self.config.host}: cannot make the working folder "
                               f"{path}: {problem[0] if problem else 'failed'}", permanent=True)
        self.workdir = str(result.stdout).strip()

    async def upload(self, conn: asyncssh.SSHClientConnection, root: str,
                     payload: tuple[bytes, bool]) -> None:
        """Unpack a packed candidate (see remote.pack) as the folder `root`, on its own
        channel (used when a file is read before any command ran)."""
        data, gzipped = payload
        try:
            result = await conn.run(unpack_command(self.workdir, gzipped), input=data,
                                    encoding=None, check=False, timeout=CONTROL_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            self.drop(conn)
            raise WorkerFailed(f"{self.config.host}: upload failed: {describe(exc)}") from None
        if result.exit_status != 0:
            err = (result.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
            raise WorkerFailed(f"{self.config.host}: cannot unpack the candidate in {root}: "
                               f"{err[0] if err else f'exit {result.exit_status}'}")
