"""SLURM worker slots: evaluations as SLURM job steps, sent through a login node over SSH.

A spec's `slurm` worker names a login node (an SSH host, as for `ssh` workers) and its
SLURM settings. Its slots share a SlurmCluster: the login node's SSH connections
(sshhost.py), the jobs this run owns there, and one `squeue` for all of them.

    hold      one holder job of `slots` tasks (sbatch) for the run; each evaluation's
              commands are steps in it (`srun --jobid=... --overlap`), so the queue is
              waited for once. Each slot's next step is made while its command runs and
              waits for that command on stdin (slurmspare.py): making a step is not on an
              evaluation's way. When it has less than `renew_before_s` left a successor is
              asked for; new evaluations go to the successor once it runs, and the old one
              is released when its last step ends. It is cancelled when the run stops.
    per-job   each evaluation gets a one-task holder job of its own, cancelled when the
              evaluation ends. While it waits the slot shows "queued 2m14s, reason
              Resources": queue time is not evaluation time and does not count toward the
              evaluation's timeout.

The candidate's files go to the login node's `workdir` (the compute nodes must see it: a
shared filesystem), as for SSH workers, and each command runs there as `srun ... sh -c
COMMAND`. A timeout, a stop or a veto cancels the step (`scancel JOB.STEP`). A job or step
the cluster ends — scancel from outside, preemption, a node failure, a time limit, a
requeue — raises WorkerFailed: the pool retries the evaluation on another slot and it is
recorded once, never as the candidate's crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncssh

from engine import spec as specs
from engine.model import CommandResult, LineSink
from engine.workers.faults import WorkerFailed
from engine.workers.slurmcluster import Report, SlurmCluster, retrieve
from engine.workers.slurmjobs import Job, clock, cluster_fault, step_command
from engine.workers.slurmspare import ENV_NAME, Spare, spare_script
from engine.workers.slurmspare import start as start_spare
from engine.workers.ssh import SSHSession, SSHWorker
from engine.workers.sshhost import SLOTS_PER_CONNECTION, describe

__all__ = ["SlurmCluster", "SlurmSession", "SlurmWorker"]

#: Step ids recorded per experiment before the rest are only counted.
RECORDED_STEPS = 3
#: Hold: each slot's steps are made a command ahead (slurmspare.py); False makes each as
#: its command comes (the benchmark's reference, bench/parallel_scaling.py --slurm).
SPARE_STEPS = True
#: Hold: seconds into a command before its slot's next step is made.
SPARE_AFTER_S = 0.5
#: A queue wait at least this long is recorded with the experiment (`, queued 2m14s`).
QUEUE_NOTED_S = 1.0


class SlurmSession:
    """A candidate's folder on the login node whose commands run as steps of a job."""

    def __init__(self, inner: SSHSession, cluster: SlurmCluster, job: Job,
                 worker: SlurmWorker) -> None:
        self.inner, self.cluster, self.job, self.worker = inner, cluster, job, worker

    async def run(self, command: str, *, timeout: float, stdin: str | None = None,
                  env: dict[str, str] | None = None,
                  on_line: LineSink | None = None) -> CommandResult:
        started = time.monotonic()
        step = ""

        def ran(name: str) -> None:
            nonlocal step
            step = name
            self.worker.ran(name)

        try:
            if self.cluster.config.allocation == "hold" and SPARE_STEPS:
                result = await self._run_spare(command, timeout, stdin, env, on_line, ran,
                                               started)
            else:
                result = await self._run_srun(command, timeout, stdin, env, on_line, ran)
        except WorkerFailed:  # the login node's connection: every slot's problem
            self.cluster.unreachable = True
            raise
        except asyncio.CancelledError:  # a stop or a veto: the step goes too
            if step:
                await self.cluster.cancel(step)
            raise
        self.cluster.unreachable = False
        fault = ""
        if result.timed_out:  # srun was killed; make sure its step is gone as well
            if step:
                await self.cluster.cancel(step)
        else:  # (our own cancel's messages say nothing about the cluster)
            fault = cluster_fault(result.output)
        if fault or result.timed_out or result.exit_code != 0:
            # Whether the job itself is gone (then hold mode asks for a new allocation).
            fault = "; ".join(filter(None, [fault, await self.cluster.job_fault(self.job)]))
        if fault:
            raise WorkerFailed(f"{self.cluster.config.host}: {fault}")
        return result

    async def _run_srun(self, command: str, timeout: float, stdin: str | None,
                        env: dict[str, str] | None, on_line: LineSink | None,
                        ran: Callable[[str], None]) -> CommandResult:
        """The command as a step srun makes now (per-job: the job is new anyway)."""
        marker = f"__autoresearch_step_{secrets.token_hex(4)}__ "
        found = False

        def sink(line: str) -> None:
            nonlocal found
            if not found and line.startswith(marker):
                found = True
                ran(line[len(marker):].strip())
            elif on_line is not None:
                on_line(line)

        script = step_command(self.job.id, command, marker, self.cluster.config)
        result = await self.inner.run(script, timeout=timeout, stdin=stdin, env=env,
                                      on_line=sink)
        output = "\n".join(line for line in result.output.split("\n")
                           if not line.startswith(marker))
        return dataclasses.replace(result, output=output)

    async def _run_spare(self, command: str, timeout: float, stdin: str | None,
                         env: dict[str, str] | None, on_line: LineSink | None,
                         ran: Callable[[str], None], started: float) -> CommandResult:
        """The command handed to a step made ahead of it (slurmspare.py)."""
        full_env = {**self.inner.host.config.environment(), **(env or {})}
        script = spare_script(command, self.inner.folder, full_env)
        if script is None:
            bad = [k for k in full_env if not ENV_NAME.match(k)]
            return CommandResult(exit_code=127, output=f"invalid environment name {bad[0]!r}")
        # The candidate's files ("." is their folder: nothing is read) while the step is
        # made, if it is not yet. Making it counts toward the timeout, as srun did before.
        upload = asyncio.ensure_future(self.inner.read_file("."))
        step = asyncio.ensure_future(asyncio.wait_for(self.worker.spare(self.job), timeout))
        try:
            await asyncio.gather(upload, step)
        except BaseException:
            for task in (upload, step):
                task.cancel()
            await asyncio.gather(upload, step, return_exceptions=True)
            made = step.exception() if step.done() and not step.cancelled() else None
            if step.done() and not step.cancelled() and made is None:
                step.result().discard()  # (the upload failed)
            elif isinstance(made, TimeoutError):
                return CommandResult(exit_code=None, output="", timed_out=True,
                                     duration=time.monotonic() - started)
            raise
        spare = step.result()
        if spare.step:
            ran(spare.step)
        left = max(0.0, timeout - (time.monotonic() - started))
        try:
            return await spare.run(script, stdin, left, on_line, started)
        except (OSError, asyncssh.Error) as exc:  # (its connection reopens if it closed)
            if spare.step:  # nothing on this channel ends the step now: scancel does
                await self.cluster.cancel(spare.step)
            raise WorkerFailed(f"{self.cluster.config.host}: {describe(exc)}") from None
        finally:
            spare.discard()  # (after a timeout, the caller's scancel ends the step)
            self.worker.hurry()

    async def read_file(self, relpath: str) -> bytes | None:
        return await self.inner.read_file(relpath)


class SlurmWorker:
    """One slot on a SLURM cluster: one evaluation at a time, as steps of a job."""

    def __init__(self, config: specs.SlurmWorker, slot: int, cluster: SlurmCluster) -> None:
        self.config = config
        self.cluster = self.host = cluster  # (`host`: what the pool closes once per cluster)
        self.ssh = SSHWorker(cluster.ssh.config, slot, host=cluster.ssh)
        self.name = f"{cluster.label}:{slot}"
        self.group = config.group
        self.backoff_s = config.backoff_s
        self._own_domain = f"slurm:{id(cluster)}:{slot}"
        self._conn_index = (slot - 1) // SLOTS_PER_CONNECTION
        #: Set by the pool: where this slot's queue state and job id go.
        self.on_state: Report | None = None
        #: The steps of the evaluation running now (or last).
        self.steps: list[str] = []
        #: What the last evaluation is recorded as: `login:3 job 1234.7`.
        self.recorded_name = self.name
        #: The job this slot runs an evaluation in now (None between evaluations).
        self.job: Job | None = None
        #: Hold: the spare step being made for this slot's next command, and its job id.
        self._next: tuple[str, asyncio.Task[Spare]] | None = None
        self._spare_conn = cluster.spare_connections + self._conn_index
        self._ended = asyncio.Event()
        cluster.reports.append(self._allocation_news)

    @property
    def fault_domain(self) -> str:
        """A job's fault is this slot's alone; an unreachable login node is every slot's."""
        return f"slurm:{id(self.cluster)}" if self.cluster.unreachable else self._own_domain

    def _report(self, queue: str, job_id: str) -> None:
        if self.on_state is not None:
            self.on_state(queue, job_id)

    def _allocation_news(self, queue: str, job_id: str) -> None:
        """The held allocation's state, for slots not busy in one (a successor queued while
        steps run in its predecessor is not what those slots are doing)."""
        if self.job is None:
            self._report(queue, job_id)

    def ran(self, step: str) -> None:
        self.steps.append(step)
        self._report("", step)

    async def _job(self) -> Job:
        cluster = self.cluster
        if self.config.allocation == "hold":
            return await cluster.allocation()
        job = await cluster.submit(1)
        try:
            await cluster.wait_running(job, self._report)
        except BaseException:
            await cluster.cancel(job)
            raise
        return job

    @asynccontextmanager
    async def open(self, candidate: Path) -> AsyncIterator[SlurmSession]:
        self.steps = []
        asked = time.monotonic()
        job = self.job = await self._job()
        queued = time.monotonic() - asked
        job.steps += 1
        self._report("", job.id)
        try:
            async with self.ssh.open(candidate) as inner:
                yield SlurmSession(inner, self.cluster, job, self)
        finally:
            shown = self.steps[:RECORDED_STEPS] or [job.id]
            more = len(self.steps) - RECORDED_STEPS
            # The wait is not evaluation time, but the experiment's wall time holds it.
            self.recorded_name = f"{self.name} job {','.join(shown)}" + (
                f" +{more}" if more > 0 else "") + (
                f", queued {clock(queued)}" if queued >= QUEUE_NOTED_S else "")
            self.job = None
            await self.cluster.release(job)
            self._report("", self.cluster.held.id if self.cluster.held else "")

    # ------------------------------------------------------------ spare steps (hold)

    async def spare(self, job: Job) -> Spare:
        """This slot's step for its next command: the one made ahead for `job` if it still
        waits, else one made now. As it is handed out, the slot's next one is started."""
        pending, self._next = self._next, None
        if pending is not None and pending[0] != job.id:  # made in an allocation now left
            self._drop(pending[1])
            pending = None
        try:
            spare = await self._wait(pending[1] if pending else self._make(job))
        except WorkerFailed:
            if pending is None:
                raise
            spare = None  # (the connection it was made on may have gone since)
        if spare is not None and not spare.usable and pending is not None:
            spare.discard()  # it died while it waited: one made now says why, if it fails
            spare = None
        if spare is None:
            spare = await self._wait(self._make(job))
        # The next one once this command has run a while (or ended): every slot making a
        # step at once would slow down the commands of the wave that is starting.
        self._next = (job.id, self._make(job, SPARE_AFTER_S))
        return spare

    def hurry(self) -> None:
        """This slot's command ended: its next step is needed soon, make it now."""
        self._ended.set()

    def _make(self, job: Job, after: float = 0.0) -> asyncio.Task[Spare]:
        ended = self._ended = asyncio.Event()

        async def make() -> Spare:
            if after:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), after)
            conn = await self.cluster.ssh.connection(self._spare_conn)
            return await start_spare(conn, job.id, self.config, self.cluster.ssh.workdir)

        task = asyncio.get_running_loop().create_task(make())
        self.cluster.spares.add(task)
        task.add_done_callback(self.cluster.spares.discard)
        task.add_done_callback(retrieve)
        return task

    async def _wait(self, task: asyncio.Task[Spare]) -> Spare:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:  # the evaluation was stopped: so is its spare
            self._drop(task)
            raise

    @staticmethod
    def _drop(task: asyncio.Task[Spare]) -> None:
        if not task.done():
            task.cancel()
        elif not task.cancelled() and task.exception() is None:
            task.result().discard()

    async def warm_up(self) -> None:
        """Connect, and (hold) ask for the allocation and make this slot's first step: the
        queue is waited for before the first evaluation needs it."""
        if self.config.allocation == "hold":  # (this slot's connections open meanwhile)
            job, *_ = await asyncio.gather(self.cluster.allocation(),
                                           self.cluster.ssh.connection(self._conn_index),
                                           self.cluster.ssh.connection(self._spare_conn))
            if self._next is None and SPARE_STEPS:
                self._next = (job.id, self._make(job))
        else:
            await self.cluster.ssh.connection(self._conn_index)

    async def close(self) -> None:
        await self.cluster.close()
