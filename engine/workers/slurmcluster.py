"""A SLURM cluster as a spec's `slurm` entry sees it: the login node's SSH connections, the
jobs this run owns there, one `squeue` for all of them, and (hold) the allocation that steps
go to, renewed before its time limit. slurm.py's slots share one; slurmjobs.py has the words.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Callable

import asyncssh

from engine import spec as specs
from engine.workers.faults import WorkerFailed
from engine.workers.remote import shell_value
from engine.workers.slurmjobs import (
    WAITING,
    Job,
    final_state_command,
    parse_final_state,
    parse_job_id,
    parse_squeue,
    sbatch_command,
    squeue_command,
)
from engine.workers.sshhost import CONTROL_TIMEOUT_S, SLOTS_PER_CONNECTION, SSHHost, describe

#: Called with what a slot waits for ("queued 2m14s, reason Resources", or "") and the
#: SLURM job (or step) id it is on ("" when none).
Report = Callable[[str, str], None]
#: Hold: a successor is asked for when the allocation has this long left (or half its
#: time limit, if shorter), unless the spec says `renew_before_s`.
RENEW_BEFORE_S = 600.0
#: Hold: seconds after which the allocation's state is asked again (in the background).
RECHECK_S = 30.0


def login_config(config: specs.SlurmWorker) -> specs.SSHWorker:
    """The login node as an SSH worker's settings (commands go through it, no launcher)."""
    shared = {k: getattr(config, k) for k in specs.RemoteWorker.model_fields}
    return specs.SSHWorker(kind="ssh", workdir=config.workdir, **shared)


def retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # its waiters got it (or were cancelled): not "never retrieved"


class SlurmCluster:
    """One spec `slurm` entry: the login node's connections, the run's jobs, their states."""

    def __init__(self, config: specs.SlurmWorker, run_name: str) -> None:
        self.config = config
        # Twice the connections an SSH host of as many slots gets: the second half carries
        # the slots' spare steps (slurmspare.py), a channel each, beside the job agents'
        # (OpenSSH serves 10 sessions per connection).
        login = login_config(config)
        self.ssh = SSHHost(login.model_copy(update={
            "slots": 2 * SLOTS_PER_CONNECTION * -(-config.slots // SLOTS_PER_CONNECTION)}))
        #: Index of the first connection for spare steps.
        self.spare_connections = -(-config.slots // SLOTS_PER_CONNECTION)
        #: Spare steps being made (cancelled when the run stops).
        self.spares: set[asyncio.Task] = set()
        self.label = self.ssh.label
        #: Things worth telling the user once (shared with the SSH host: a key learned).
        self.notes = self.ssh.notes
        #: Every job of this run carries this name (`squeue -n` finds them).
        self.job_name = f"autoresearch.{run_name}"
        self.jobs: dict[str, Job] = {}
        #: Hold: the allocation new steps go to.
        self.held: Job | None = None
        self._asking: asyncio.Task[Job] | None = None
        self._query: asyncio.Task[None] | None = None
        #: Every slot's report, for the allocation's queue state (shared by all in hold).
        self.reports: list[Report] = []
        #: Whether the last command could not reach the login node (all slots fail alike).
        self.unreachable = False
        self.closed = False
        self._sweep: asyncio.Task[tuple[int, str, str]] | None = None
        #: When (time.monotonic) squeue last answered.
        self.polled = 0.0

    # ------------------------------------------------------------ the login node

    async def control(self, script: str) -> tuple[int, str, str]:
        """Run a SLURM command on the login node: (exit status, stdout, stderr)."""
        if self.closed:
            raise WorkerFailed("the run is shutting down")
        exports = "".join(f"export {k}={shell_value(v)}; " for k, v in self.config.env.items())
        try:
            conn = await self.ssh.connection(0)
        except WorkerFailed:
            self.unreachable = True
            raise
        try:
            result = await conn.run(f"sh -c {shlex.quote(exports + script)}", check=False,
                                    timeout=CONTROL_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            self.ssh.drop(conn)
            self.unreachable = True
            raise WorkerFailed(f"{self.config.host}: {describe(exc)}") from None
        self.unreachable = False
        status = result.exit_status if result.exit_status is not None else 255
        return status, str(result.stdout or ""), str(result.stderr or "")

    def _problem(self, status: int, out: str, err: str) -> str:
        lines = (err.strip() or out.strip()).splitlines()
        return lines[-1] if lines else f"exit {status}"

    # ------------------------------------------------------------ jobs

    async def submit(self, tasks: int) -> Job:
        """A holder job of `tasks` tasks, submitted (not yet running)."""
        sweep = self._sweep
        if sweep is None or sweep.done() and (sweep.cancelled() or sweep.exception()):
            # Jobs of this run left by an engine that was killed (its allocations would
            # hold the GPUs until their time limit): the run has one engine, so they go.
            # Once, and before any job of ours exists (every submission waits for it).
            self._sweep = asyncio.get_running_loop().create_task(self.control(
                f"scancel --name={shlex.quote(self.job_name)} --user=\"$(id -un)\" "
                "2>/dev/null"))
            self._sweep.add_done_callback(retrieve)
        await asyncio.shield(self._sweep)
        status, out, err = await self.control(sbatch_command(self.config, self.job_name, tasks))
        job_id = parse_job_id(out) if status == 0 else None
        if job_id is None:
            problem = self._problem(status, out, err)
            raise WorkerFailed(f"{self.config.host}: sbatch refused the job: {problem}",
                               permanent="invalid" in problem.lower())
        job = self.jobs[job_id] = Job(job_id)
        return job

    async def refresh(self) -> None:
        """One `squeue` for every live job of ours (callers at the same time share it)."""
        await asyncio.shield(self._ask_squeue())

    def _ask_squeue(self) -> asyncio.Task[None]:
        if self._query is None or self._query.done():
            self._query = asyncio.get_running_loop().create_task(self._poll())
            self._query.add_done_callback(retrieve)
        return self._query

    async def _poll(self) -> None:
        began = time.monotonic()
        live = [j for j in self.jobs.values() if not j.gone]
        if not live:
            return
        status, out, err = await self.control(squeue_command([j.id for j in live]))
        if status != 0 and "Invalid job id" not in err:  # (every one of them has ended)
            raise WorkerFailed(f"{self.config.host}: squeue failed: "
                               f"{self._problem(status, out, err)}")
        self.polled = began
        rows = parse_squeue(out) if status == 0 else {}
        for job in live:
            row = rows.get(job.id)
            if row is not None:
                job.update(*row)
            elif job.submitted < began:  # (a job submitted after the query began is new)
                job.gone = True

    @staticmethod
    def ended(job: Job) -> bool:
        """Gone, or in a state it cannot run from, or requeued after it ran."""
        if job.gone:
            return True
        if job.state == "RUNNING":
            return False
        return job.state not in WAITING or job.started is not None

    async def wait_running(self, job: Job, report: Report) -> None:
        """Until `job` runs, reporting its queue state; WorkerFailed if it ends first or
        waits longer than `queue_timeout_s`."""
        delay = 0.05
        limit = self.config.queue_timeout_s
        while True:
            await self.refresh()
            if job.running:
                return
            if self.ended(job):
                state = await self.final_state(job)
                raise WorkerFailed(f"{self.config.host}: job {job.id} ended before it ran: "
                                   f"{state}")
            report(job.queued(), job.id)
            if limit is not None and time.monotonic() - job.submitted > limit:
                await self.cancel(job)
                raise WorkerFailed(f"{self.config.host}: job {job.id} waited more than "
                                   f"{limit:g}s in the queue ({job.reason})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.poll_s)

    async def final_state(self, job: Job) -> str:
        """How a job that left the queue ended (sacct, else scontrol), best effort."""
        try:
            _, out, _ = await self.control(final_state_command(job.id))
        except WorkerFailed:
            return job.state
        return parse_final_state(out) or job.state

    async def job_fault(self, job: Job) -> str:
        """Why `job` cannot run steps any more ("" while it can)."""
        await self.refresh()
        if not self.ended(job):
            return ""
        return f"job {job.id} ended: {await self.final_state(job)}"

    async def cancel(self, *jobs: Job | str) -> None:
        """scancel jobs (or `JOB.STEP` steps), best effort and never cut short by a stop."""
        ids = [j.id if isinstance(j, Job) else j for j in jobs]
        for job_id in ids:
            if job_id in self.jobs:
                self.jobs.pop(job_id).gone = True
        if ids:
            try:
                await asyncio.shield(self.control(shlex.join(["scancel", *ids])))
            except WorkerFailed:
                pass  # unreachable: the time limit ends it (and close() tries again)

    # ------------------------------------------------------------ hold

    def broadcast(self, queue: str, job_id: str) -> None:
        for report in self.reports:
            report(queue, job_id)

    async def allocation(self) -> Job:
        """The held allocation for a step: the running one, or (waiting in the queue) the
        one asked for. One near its time limit keeps serving until its successor runs."""
        while True:
            job = self.held
            if job is not None and time.monotonic() - self.polled > RECHECK_S:
                # It may have ended while no step ran in it: asked in the background, not
                # on this evaluation's way (squeue can take seconds on a busy cluster); a
                # step in an allocation that has ended is a worker fault, tried again.
                self._ask_squeue()
            if job is not None and self.ended(job):
                self.held = None  # lost (a time limit, preemption, a node failure)
                if job.gone:
                    self.jobs.pop(job.id, None)
                else:  # requeued: it must not come back to hold resources for nobody
                    await self.cancel(job)
                job = None
            if job is not None:
                left = job.remaining_s()
                margin = self.config.renew_before_s or min(RENEW_BEFORE_S, (job.left_s or 0) / 2)
                if left is not None and left < margin:
                    self._ask()  # the successor, in the background
                return job
            await asyncio.shield(self._ask())

    def _ask(self) -> asyncio.Task[Job]:
        if self._asking is None or self._asking.done():
            self._asking = asyncio.get_running_loop().create_task(self._hold())
            self._asking.add_done_callback(retrieve)
        return self._asking

    async def _hold(self) -> Job:
        job = await self.submit(self.config.slots)
        try:
            await self.wait_running(job, self.broadcast)
        except BaseException:
            await self.cancel(job)
            raise
        old, self.held = self.held, job
        self.broadcast("", job.id)
        if old is not None:
            old.retired = True
            if old.steps == 0:
                await self.cancel(old)
        return job

    async def release(self, job: Job) -> None:
        """A step of `job` ended: a per-job job goes now, a retired allocation once idle."""
        job.steps -= 1
        if self.config.allocation == "per-job" or (job.retired and job.steps <= 0):
            await self.cancel(job)

    async def close(self) -> None:
        pending = [t for t in (self._asking, *self.spares) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        live = [j for j in self.jobs.values() if not j.gone]
        if live and not self.closed:
            await self.cancel(*live)
        self.closed = True
        await self.ssh.close()
