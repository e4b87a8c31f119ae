"""SLURM's side of a SLURM worker: the command lines it sends to a login node, and how it
reads what comes back (squeue's rows, SLURM's time format, srun's errors).

Nothing here does I/O: slurm.py sends these commands over SSH and calls these readers.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field

from engine import spec as specs

#: What a holder job runs: nothing, until it is cancelled or its time runs out (a loop of
#: `sleep`, since `sleep infinity` is GNU's only).
HOLDER = "while :; do sleep 3600; done"
#: Job states in which a job may still run (squeue's %T).
WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                     "RESIZING", "SUSPENDED"})
RUNNING = "RUNNING"

# SLURM saying the step or job was ended by the cluster, not by the command: the job's or
# step's cancellation (scancel, preemption, a time limit, a node failure), or no step could
# be made in the job. Only lines SLURM's own tools print (srun:, slurmstepd:) count.
_CANCELLED = re.compile(r"^(?:srun|slurmstepd(?:-\S+)?): error: \*\*\* (JOB|STEP) (\S+) ON \S+ "
                        r"CANCELLED AT \S+(?: DUE TO ([A-Z _]+?))?(?: \*\*\*|$)", re.M)
_NO_STEP = re.compile(
    r"^srun: error: (Unable to create step for job \S+: .*|Unable to confirm allocation for "
    r"job \S+: .*|Node failure on .*|Slurm job \S+ has expired.*|.*Job/step already "
    r"completing or completed.*|.*Invalid job id specified.*)$", re.M)


def duration_s(text: str | None) -> float | None:
    """Seconds in a SLURM time (`30`, `5:00`, `1:00:00`, `2-12`, `1-00:00:00`); None for
    UNLIMITED, INVALID and the like. Minutes alone mean minutes, two fields are M:S."""
    text = (text or "").strip()
    days = 0
    if "-" in text:
        head, _, text = text.partition("-")
        if not head.isdigit():
            return None
        days = int(head)
        fields = text.split(":")
        fields += ["0"] * (3 - len(fields))  # D-H, D-H:M, D-H:M:S
    else:
        fields = text.split(":")
        if len(fields) == 1:
            fields = ["0", fields[0], "0"]
        elif len(fields) == 2:
            fields = ["0", *fields]
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    h, m, s = (int(f) for f in fields)
    return float(((days * 24 + h) * 60 + m) * 60 + s)


def clock(seconds: float) -> str:
    """`2m14s`, `41s`, `1h03m`: a queue wait for a slot's state."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Job:
    """One job of ours on the cluster (a held allocation, or one evaluation's job)."""

    id: str
    #: squeue's state (%T); once the job has left squeue, its final state.
    state: str = "PENDING"
    reason: str = ""
    submitted: float = field(default_factory=time.monotonic)
    #: When it was first seen running (time.monotonic), and its time limit then left.
    started: float | None = None
    left_s: float | None = None
    #: Gone from squeue (finished, cancelled, failed).
    gone: bool = False
    #: Steps running in it now (hold: a retired allocation is released at zero).
    steps: int = 0
    #: Hold: a successor serves new steps; this one goes when its last step ends.
    retired: bool = False

    @property
    def running(self) -> bool:
        return self.state == RUNNING and not self.gone

    def remaining_s(self, now: float | None = None) -> float | None:
        if self.started is None or self.left_s is None:
            return None
        return self.left_s - ((now or time.monotonic()) - self.started)

    def queued(self, now: float | None = None) -> str:
        """What a slot waiting for this job shows: `queued 2m14s, reason Resources`."""
        wait = clock((now or time.monotonic()) - self.submitted)
        reason = self.reason if self.reason and self.reason != "None" else "waiting"
        return f"queued {wait}, reason {reason}"

    def update(self, state: str, reason: str, left: str) -> None:
        if state == RUNNING and self.started is None:
            self.started = time.monotonic()
            self.left_s = duration_s(left)
        self.state, self.reason = state, reason


def sbatch_command(config: specs.SlurmWorker, name: str, tasks: int) -> str:
    """Submit a holder job of `tasks` tasks; prints its id (`--parsable`)."""
    argv = ["sbatch", "--parsable", f"--job-name={name}", f"--ntasks={tasks}", "--no-requeue",
            "--output=/dev/null", "--error=/dev/null"]
    if config.partition:
        argv.append(f"--partition={config.partition}")
    if config.gres:
        argv.append(f"--gres={config.gres}")
    if config.time:
        argv.append(f"--time={config.time}")
    argv += [*config.sbatch_args, f"--wrap={HOLDER}"]
    return shlex.join(argv)


def parse_job_id(out: str) -> str | None:
    """sbatch --parsable prints `ID` or `ID;CLUSTER`."""
    text = out.strip().splitlines()[-1:] if out.strip() else []
    head = text[0].split(";", 1)[0].strip() if text else ""
    return head if head.isdigit() else None


def squeue_command(ids: list[str]) -> str:
    return shlex.join(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r|%L"])


def parse_squeue(out: str) -> dict[str, tuple[str, str, str]]:
    """squeue's rows as {job id: (state, reason, time left)}."""
    rows: dict[str, tuple[str, str, str]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0]:
            rows[parts[0]] = (parts[1], parts[2], parts[3])
    return rows


def final_state_command(job_id: str) -> str:
    """A finished job's state: `sacct` when the cluster keeps accounting, else what
    `scontrol show job` still remembers (for MinJobAge seconds)."""
    q = shlex.quote(job_id)
    return (f"sacct -n -X -P -j {q} -o State 2>/dev/null | head -n 1 | grep . || "
            f"scontrol show job -o {q} 2>/dev/null")


def parse_final_state(out: str) -> str:
    """`NODE_FAIL`, `CANCELLED by 0`, `PREEMPTED`...; "" when unknown."""
    text = out.strip()
    found = re.search(r"\bJobState=(\S+)", text)
    if found:
        reason = re.search(r"\bReason=(\S+)", text)
        extra = reason.group(1) if reason and reason.group(1) != "None" else ""
        return f"{found.group(1)} ({extra})" if extra else found.group(1)
    return text.splitlines()[0].strip() if text and "=" not in text else ""


def srun_argv(job_id: str, config: specs.SlurmWorker) -> list[str]:
    """One task on one node, sharing the allocation with the other slots' steps
    (`--overlap`) but seeing only its own share of it (`--exact`)."""
    return ["srun", f"--jobid={job_id}", "--overlap", "--exact", "--ntasks=1", "--nodes=1",
            "--quiet", *config.srun_args]


def step_command(job_id: str, command: str, marker: str, config: specs.SlurmWorker) -> str:
    """Run `command` as one step of job `job_id` (srun_argv). The step first prints
    `MARKER JOB.STEP`, which the session takes out of the output (to record it, and to
    cancel just this step)."""
    argv = srun_argv(job_id, config)
    inner = f'echo "{marker}$SLURM_JOB_ID.$SLURM_STEP_ID"; eval "$1"'
    return f"exec {shlex.join(argv)} sh -c {shlex.quote(inner)} sh {shlex.quote(command)}"


def cluster_fault(output: str) -> str:
    """Why SLURM ended a step, when its output says the cluster did (not the command): ""
    when it does not."""
    found = _CANCELLED.search(output)
    if found:
        what, ident, why = found.groups()
        return (f"{what.lower()} {ident} was cancelled" + (f" due to {why.lower()}" if why
                                                           else ""))
    found = _NO_STEP.search(output)
    return found.group(1) if found else ""
