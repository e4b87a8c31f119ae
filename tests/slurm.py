"""A real single-node SLURM cluster for tests and benchmarks, on 127.0.0.1: munged,
slurmctld and slurmd from Debian's packages (`scripts/setup-system` installs them), with
their state, sockets, ports and logs in a folder of their own, torn down afterwards.

    cluster = SlurmCluster(folder).start()     # about half a second
    cluster.env                                # {"SLURM_CONF": ...} for the worker's `env`
    cluster.squeue()                           # [(job id, state, name), ...] of live jobs
    cluster.set_node("down") / ("resume")      # a node failure and its repair
    cluster.stop()

The node `ar1` has 8 CPUs (oversubscribed: `config_overrides`) and one fake GPU (a gres
whose device file is /dev/null). Without cgroups or systemd here, the plugins are the ones
that need neither: proctrack/linuxproc, task/none. There is no slurmdbd (it needs MySQL),
so accounting is off: `sacct` says so, and finished jobs stay visible to `scontrol show
job` for MinJobAge seconds (the worker falls back to it). The daemons run as root; the
cluster is skipped (with the reason) when that or the binaries are missing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NODE = "ar1"
#: CPUs the node claims (the machine may have fewer: jobs just share them).
CPUS = 8
PARTITION = "debug"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "scontrol")

SLURM_CONF = """\
ClusterName=artest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={folder}/jobcomp.txt
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=1
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=1
NodeName={node} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 Gres=gpu:1 State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def why_not() -> str:
    """Why a SLURM cluster cannot run here ("" when it can)."""
    missing = [b for b in BINARIES if shutil.which(b) is None
               and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; run scripts/setup-system)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs (these tests run as root in CI)"
    return ""


class SlurmCluster:
    """munged + slurmctld + slurmd on 127.0.0.1, with everything under one folder."""

    def __init__(self, folder: Path | None = None) -> None:
        # Short paths: the munge socket's must fit in a sockaddr_un (108 bytes).
        self.folder = Path(folder or tempfile.mkdtemp(prefix="arslurm-"))
        self._made = folder is None  # removed by stop()
        self.conf = self.folder / "slurm.conf"
        self.munge_socket = self.folder / "munge" / "sock"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {"SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------ start and stop

    def start(self, timeout: float = 30) -> SlurmCluster:
        reason = why_not()
        if reason:
            raise RuntimeError(reason)
        for sub in ("state", "spool", "munge"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o755)
        os.chmod(self.folder / "munge", 0o755)  # the socket is for every local user
        key = self.folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.conf.write_text(SLURM_CONF.format(
            ctld_port=free_port(), slurmd_port=free_port(), munge_socket=self.munge_socket,
            folder=self.folder, node=NODE, hostname=socket.gethostname(), cpus=CPUS,
            partition=PARTITION))
        (self.folder / "gres.conf").write_text(f"NodeName={NODE} Name=gpu File=/dev/null\n")
        atexit.register(self.stop)
        m = self.folder / "munge"
        self._spawn("munged", "-F", "-f", f"--socket={self.munge_socket}", f"--key-file={key}",
                    f"--log-file={m / 'log'}", f"--pid-file={m / 'pid'}",
                    f"--seed-file={m / 'seed'}", "--num-threads=2")
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged")
        self._spawn("slurmctld", "-D", "-i")
        self._spawn("slurmd", "-D", "-N", NODE)
        self._wait(lambda: self.node_state() == "idle", timeout, "the node to be idle")
        return self

    def _spawn(self, *argv: str) -> None:
        log = (self.folder / f"{argv[0]}.out").open("ab")
        with log:
            self.procs.append(subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, start_new_session=True))

    def _wait(self, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"SLURM did not start ({what}): {self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        tails = []
        for path in sorted(self.folder.glob("*.out")) + sorted(self.folder.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-5:]
            tails.append(f"{path.name}: " + " | ".join(lines))
        return "\n".join(tails)

    def stop(self) -> None:
        """Cancel every job, then end the daemons this cluster started (by their pids)."""
        if not self.procs:
            return
        if all(p.poll() is None for p in self.procs):
            self.run("scancel", "--user", "root", check=False)
            deadline = time.monotonic() + 5
            while self.squeue() and time.monotonic() < deadline:
                time.sleep(0.05)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs = []
        if self._made:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start() if not self.procs else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ asking the cluster

    def run(self, *argv: str, check: bool = True) -> str:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                                env={**os.environ, **self.env})
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout

    def node_state(self) -> str:
        try:
            return self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False).strip()
        except subprocess.TimeoutExpired:
            return ""

    def squeue(self) -> list[tuple[str, str, str]]:
        """Live jobs: (job id, state, name)."""
        out = self.run("squeue", "-h", "-o", "%i|%T|%j", check=False)
        return [tuple(line.split("|", 2)) for line in out.splitlines() if line]  # type: ignore

    def left_behind(self, wait_s: float = 15) -> list[tuple[str, str, str]]:
        """Jobs still live once the engine is done, other than ones SLURM is cleaning up
        after a scancel (COMPLETING, which can outlast a node's failure by seconds)."""
        deadline = time.monotonic() + wait_s
        while (jobs := self.squeue()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return [j for j in jobs if j[1] != "COMPLETING"]

    def steps(self) -> list[str]:
        """Live job steps other than batch/extern ones: "JOB.STEP" ids."""
        out = self.run("squeue", "-h", "-s", "-o", "%i", check=False)
        return [s for s in out.split() if s.rsplit(".", 1)[-1].isdigit()]

    def processes(self, text: str) -> list[int]:
        """Processes on this machine (the node) whose command line contains `text`."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if text in cmdline and "pytest" not in cmdline:
                    found.append(int(entry.name))
        return found

    def set_node(self, state: str, reason: str = "test") -> None:
        """`scontrol update` the node: "down" (its jobs die), "resume"..."""
        self.run("scontrol", "update", f"nodename={NODE}", f"state={state}", f"reason={reason}")
