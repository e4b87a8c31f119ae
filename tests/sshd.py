"""A real OpenSSH server for tests and benchmarks: `/usr/sbin/sshd` on 127.0.0.1 with a
throwaway host key, an authorized throwaway user key, and a known_hosts file written for it.

    lab = SSHLab(tmp)                  # keys, known_hosts, an ssh_config of `Host` aliases
    server = lab.host("gpu")           # one sshd on its own port = one host
    spec = make_spec(ws, "run", command=..., workers=[lab.worker("gpu", slots=4)])
    loop = await run_loop(spec, db, during=...)   # the real engine, in this process
    server.kill_connections()          # a worker dies: its connections drop
    server.freeze()                    # a host hangs silently
    server.stop()                      # the host becomes unreachable

Test modules get a lab per test with `@pytest.fixture def lab(...): yield from open_lab(...)`.
Nothing here touches the real `~/.ssh`: every path is inside the given folder, and the
agent is left out. sshd needs `/run/sshd` (made here) and runs as the current user.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import yaml

from engine.host import Host
from engine.loop import RunLoop
from engine.spec import load_spec
from engine.store import Store

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SSHKeys:
    """Throwaway keys and the files a client needs: identity, authorized_keys, known_hosts."""

    folder: Path
    host_key: Path
    identity: Path
    authorized_keys: Path
    known_hosts: Path
    host_public: str

    @classmethod
    def create(cls, folder: Path) -> SSHKeys:
        folder.mkdir(parents=True, exist_ok=True)
        host = asyncssh.generate_private_key("ssh-ed25519")
        user = asyncssh.generate_private_key("ssh-ed25519")
        host_key, identity = folder / "host_ed25519", folder / "id_ed25519"
        host.write_private_key(host_key)
        user.write_private_key(identity)
        os.chmod(host_key, 0o600)
        os.chmod(identity, 0o600)
        authorized = folder / "authorized_keys"
        authorized.write_bytes(user.export_public_key())
        known = folder / "known_hosts"
        known.write_text("")
        return cls(folder, host_key, identity, authorized, known,
                   host.export_public_key().decode().strip())

    def trust(self, port: int) -> None:
        """Add the host key for 127.0.0.1:PORT to known_hosts (as `ssh-keyscan` would)."""
        with self.known_hosts.open("a") as handle:
            handle.write(f"[127.0.0.1]:{port} {self.host_public}\n")

    def ssh_config(self, path: Path, aliases: dict[str, int]) -> Path:
        """An ssh_config with one `Host ALIAS` per port, as a user's ~/.ssh/config would."""
        blocks = [f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
                  f"  IdentityFile {self.identity}\n  UserKnownHostsFile {self.known_hosts}\n"
                  for alias, port in aliases.items()]
        path.write_text("\n".join(blocks))
        return path


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class SSHServer:
    """One sshd process listening on 127.0.0.1 (one "host")."""

    def __init__(self, keys: SSHKeys, folder: Path, port: int | None = None,
                 trusted: bool = True) -> None:
        self.keys = keys
        self.folder = folder
        self.port = port or free_port()
        self.trusted = trusted
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "sshd.log"

    def config(self) -> Path:
        """sshd_config for this server. `SetEnv SHLVL=1` keeps bash from sourcing ~/.bashrc
        for every channel (bash does so for shells started by sshd when SHLVL is unset): the
        root bashrc here runs `pyenv init`, 0.3 s of CPU per command, which a real GPU box's
        guarded bashrc would not."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "sshd_config"
        path.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.keys.host_key}\n"
            f"AuthorizedKeysFile {self.keys.authorized_keys}\n"
            f"PidFile {self.folder / 'sshd.pid'}\n"
            "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nMaxSessions 100\nMaxStartups 100:30:200\n"
            "PrintMotd no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
            "SetEnv SHLVL=1\n")
        return path

    def start(self) -> SSHServer:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
        config = self.config()
        if self.trusted and f"]:{self.port} " not in self.keys.known_hosts.read_text():
            self.keys.trust(self.port)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                         stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)  # even if the test process dies without cleaning up
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd did not listen on {self.port}")

    def children(self) -> list[int]:
        """The sshd processes serving current connections (not the shells they started)."""
        if self.proc is None:
            return []
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in _children(pid):
                if _comm(child).startswith("sshd"):
                    found.append(child)
                    todo.append(child)
        return found

    def processes(self, marker: str) -> list[int]:
        """Processes below this sshd (the "remote" jobs) whose command line starts with `marker`."""
        found, todo = [], [self.proc.pid] if self.proc else []
        while todo:
            for child in _children(todo.pop()):
                todo.append(child)
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if cmdline.startswith(marker.encode()):
                    found.append(child)
        return found

    def connections(self) -> int:
        """Established TCP connections to this sshd (from /proc/net/tcp)."""
        count = 0
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == self.port and fields[3] == "01":
                count += 1
        return count

    def signal_connections(self, sig: int) -> int:
        pids = self.children()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return len(pids)

    def kill_connections(self) -> int:
        """Kill the sshd processes serving current connections: they drop; new ones work."""
        return self.signal_connections(signal.SIGKILL)

    def freeze(self) -> int:
        """Stop the connection processes: the peer goes silent without closing anything."""
        return self.signal_connections(signal.SIGSTOP)

    def stop(self) -> None:
        """Kill sshd and every connection it serves: the host becomes unreachable."""
        if self.proc is None:
            return
        self.signal_connections(signal.SIGCONT)
        self.kill_connections()
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> SSHServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SSHLab:
    """Several sshd "hosts" sharing one key pair, one known_hosts and one ssh_config of
    aliases; `worker(alias)` gives the spec snippet for a worker on one of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.keys = SSHKeys.create(folder)
        self.servers: dict[str, SSHServer] = {}
        self.ports: dict[str, int] = {}
        self.config = folder / "ssh_config"
        self.config.write_text("")
        self.remote = folder / "remote"

    def host(self, alias: str, *, trusted: bool = True, start: bool = True) -> SSHServer:
        server = SSHServer(self.keys, self.folder / alias, trusted=trusted)
        self.servers[alias] = server
        self.ports[alias] = server.port
        self.keys.ssh_config(self.config, self.ports)
        return server.start() if start else server

    def worker(self, alias: str, *, slots: int = 1, **extra: object) -> dict[str, object]:
        """A spec `workers` entry for this host, hermetic (its own config and known_hosts)."""
        return {"kind": "ssh", "host": alias, "slots": slots, "ssh_config": str(self.config),
                "workdir": str(self.remote / alias), "heartbeat_s": 2, "connect_timeout_s": 5,
                "backoff_s": 0.2, **extra}

    def remote_folders(self) -> list[Path]:
        """Job folders left on the "remote" side (should be none once jobs end)."""
        return [p for p in self.remote.glob("*/*") if p.is_dir()] if self.remote.exists() else []

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()


def open_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SSHLab]:
    """An SSH lab in the test's tmp folder, stopped after; no agent, so only the throwaway
    key is offered. Test modules wrap it: `@pytest.fixture def lab(...): yield from open_lab(...)`."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    lab = SSHLab(tmp_path / "ssh")
    try:
        yield lab
    finally:
        lab.close()


def process_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# ---------------------------------------------------------------- running loops in-process

PARAMS = {"x": {"type": "int", "min": 0, "max": 20}, "y": {"type": "choice", "values": ["a", "b", "c"]}}


def make_spec(ws: Path, name: str, *, command: str, workers: list[dict], stop: dict | None = None,
              timeout_s: float = 20, params: dict | None = None, evaluate: dict | None = None,
              **top: object) -> Path:
    """A params × metric spec over conftest's `params_workspace`, with the given workers."""
    data = {
        "name": name,
        "target": {"workspace": ws.name, "files": ["params.yaml"], "protected": ["score.py"]},
        "mutator": {"kind": "params", "file": "params.yaml", "seed": 3,
                    "params": params or PARAMS},
        "evaluate": evaluate or {"kind": "metric", "command": command, "metric": "loss",
                                 "direction": "minimize", "timeout_s": timeout_s},
        "stop": stop or {"max_rounds": 4},
        "workers": workers,
        **top,
    }
    path = ws.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def until(check: Callable[[], object], timeout: float = 20, what: str = "condition") -> None:
    """Wait (bounded) until `check()` is truthy."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def saw_line(loop: RunLoop, text: str) -> bool:
    """Whether an event line containing `text` was logged (flushed or still buffered)."""
    return any(text in e[4] for e in loop.ledger.events) or any(
        text in e["line"] for e in loop.store.events(loop.run_id, limit=100_000))


async def run_loop(spec_path: Path, db: Path, *,
                   during: Callable[[RunLoop], Awaitable[None]] | None = None,
                   timeout: float = 90) -> RunLoop:
    """Host one run in this process (the real engine) until it stops; `during` runs alongside."""
    store = Store(db)
    host = Host(store)
    loop = host.add(load_spec(spec_path))
    task = host.start(loop)
    try:
        if during is not None:
            await during(loop)
        await asyncio.wait_for(asyncio.shield(task), timeout)
    finally:
        if not task.done():
            host.stop_all()
            await asyncio.wait_for(task, 30)
        await host.close()
    return loop
