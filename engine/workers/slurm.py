"""SLURM worker slots: evaluations as SLURM job steps, sent through a login node over SSH.

A spec's `slurm` worker names a login node (an SSH host, as for `ssh` workers) and its
SLURM settings. Its slots share a SlurmCluster: the login node's SSH connections
(sshhost.py), the jobs this run owns there, and one `squeue` for all of them.

    hold      one holder job of `slots` tasks (sbatch) for the run; each evaluation's
              commands are steps in it (`srun --jobid=... --overlap`), so the queue is
              waited for once. When it has less than `renew_before_s` left a successor is
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
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from engine import spec as specs
from engine.model import CommandResult, LineSink
from engine.workers.faults import WorkerFailed
from engine.workers.slurmcluster import Report, SlurmCluster
from engine.workers.slurmjobs import Job, clock, cluster_fault, step_command
from engine.workers.ssh import SSHSession, SSHWorker
from engine.workers.sshhost import SLOTS_PER_CONNECTION

__all__ = ["SlurmCluster", "SlurmSession", "SlurmWorker"]

#: Step ids recorded per experiment before the rest are only counted.
RECORDED_STEPS = 3
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
        marker = f"__autoresearch_step_{secrets.token_hex(4)}__ "
        step = ""

        def sink(line: str) -> None:
            nonlocal step
            if not step and line.startswith(marker):
                step = line[len(marker):].strip()
                self.worker.ran(step)
            elif on_line is not None:
                on_line(line)

        script = step_command(self.job.id, command, marker, self.cluster.config)
        try:
            result = await self.inner.run(script, timeout=timeout, stdin=stdin, env=env,
                                          on_line=sink)
        except WorkerFailed:  # the login node's connection: every slot's problem
            self.cluster.unreachable = True
            raise
        except asyncio.CancelledError:  # a stop or a veto: the step goes too
            if step:
                await self.cluster.cancel(step)
            raise
        self.cluster.unreachable = False
        output = "\n".join(line for line in result.output.split("\n")
                           if not line.startswith(marker))
        fault = ""
        if result.timed_out:  # srun was killed; make sure its step is gone as well
            if step:
                await self.cluster.cancel(step)
        else:  # (our own cancel's messages say nothing about the cluster)
            fault = cluster_fault(output)
        if fault or result.timed_out or result.exit_code != 0:
            # Whether the job itself is gone (then hold mode asks for a new allocation).
            fault = "; ".join(filter(None, [fault, await self.cluster.job_fault(self.job)]))
        if fault:
            raise WorkerFailed(f"{self.cluster.config.host}: {fault}")
        return dataclasses.replace(result, output=output)

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

    async def warm_up(self) -> None:
        """Connect, and (hold) ask for the allocation: the queue is waited for before the
        first evaluation needs it."""
        if self.config.allocation == "hold":
            await self.cluster.allocation()
        else:
            await self.cluster.ssh.connection(self._conn_index)

    async def close(self) -> None:
        await self.cluster.close()
