"""Scoring one version: stage it in a worker slot's folder, evaluate it there (repeats, a
tier's environment), hand it to another slot if the worker fails, and keep the store's view
of the slots current.

An evaluation whose worker fails (not the evaluation itself) is retried on another slot, at
most `pool.max_tries` times; the slot is marked down, and every change of a slot's state is
written to the store (a `workers` row, plus an event when it goes down or comes back) so any
UI can show it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from engine.context import RunContext
from engine.llm import LLMUnavailable
from engine.model import CRASHED, Evaluation, Worker
from engine.outage import interrupted_evaluation
from engine.records import once_started
from engine.spend import metered, settle
from engine.workers.faults import NoWorker, WorkerFailed
from engine.workers.pool import WorkerPool, WorkerState
from engine.workers.tiers import Tier
from engine.workspace import SlotFolders

#: Seconds a slot's busy/idle change may wait before it is written to the store.
WORKER_FLUSH_S = 0.2
#: Staging that took less than this last time runs inline: a thread hand-off costs ~0.1 ms,
#: more than syncing a small workspace's slot folder.
INLINE_STAGE_S = 0.002
#: Stagings whose shortest decides (StagingTimes).
STAGE_SAMPLES = 3

Files = dict[str, str]


class StagingTimes:
    """How long the last few stagings took; the shortest decides whether the next runs
    inline. A big workspace is slow every time, a small one only when the machine preempted
    the engine (a single slow one once sent a millisecond run's staging to a thread, and
    its proposals made ahead with it, four rounds in ten on a loaded machine)."""

    def __init__(self) -> None:
        self._last: deque[float] = deque(maxlen=STAGE_SAMPLES)

    def add(self, seconds: float) -> None:
        self._last.append(seconds)

    @property
    def inline(self) -> bool:
        return min(self._last, default=0.0) < INLINE_STAGE_S  # (none yet: try inline)


class Scorer:
    """Evaluates versions on a run's worker pool."""

    def __init__(self, ctx: RunContext, pool: WorkerPool, folders: SlotFolders,
                 think_ahead: Callable[[int], Files | None] = lambda exp_id: None) -> None:
        self.ctx = ctx
        self.pool = pool
        self.folders = folders
        #: Asked at an evaluation's first pause, on one slot: the next candidate's files to
        #: stage in the spare folder meanwhile (engine/ahead.py), or None.
        self.think_ahead = think_ahead
        #: Worker rows waiting to be written (slots change state twice a job: written in
        #: batches, like event lines).
        self._dirty: dict[str, tuple[WorkerState, str]] = {}
        self._flush: asyncio.TimerHandle | None = None
        #: Whether staging runs inline or in a thread, from how long it took.
        self._staging = StagingTimes()
        #: Runs a write from a callback (the loop sets engine/storage.py's guard).
        self.quietly: Callable[[Callable[[], object]], None] = lambda write: write()
        pool.on_change = self._worker_changed
        for state in pool.states.values():
            self._dirty[state.name] = (state, "idle")
        self.flush_workers(replace=True)

    # ------------------------------------------------------------ workers

    def _worker_changed(self, state: WorkerState, change: str) -> None:
        ctx = self.ctx
        if change == "down":
            ctx.log(f"worker {state.name} down: {state.reason} "
                    f"(next try in {state.retry_in:.0f}s)", level="warning", source=state.name)
        elif change == "up":
            ctx.log(f"worker {state.name} up again", level="warning", source=state.name)
        # The row is made when written (a slot changes twice a job: most changes are
        # overwritten before a write); "stopped" is the one change its state does not show.
        self._dirty[state.name] = (state, change)
        if change in ("down", "up", "stopped"):
            self.quietly(self.flush_workers)  # news worth showing at once
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(
                WORKER_FLUSH_S, self.quietly, self.flush_workers)
            # (a slot goes busy as an evaluation starts, whose first pause commits: the
            # row goes in with that commit, and the timer is not needed)
            ctx.ledger.records.ride(self._ride)

    @staticmethod
    def _row(state: WorkerState, change: str) -> dict:
        return {"name": state.name, "group": state.group,
                "status": "stopped" if change == "stopped" else state.status,
                "job": state.job, "reason": state.reason, "failures": state.failures,
                "retry_at": None if state.up else time.time() + state.retry_in,
                "queue": state.queue, "job_id": state.job_id}

    def flush_workers(self, replace: bool = False, commit: bool = True) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._dirty or replace:
            rows = [self._row(state, change) for state, change in self._dirty.values()]
            dirty, self._dirty = self._dirty, {}
            try:
                self.ctx.store.set_workers(self.ctx.run_id, rows, replace=replace,
                                           commit=commit)
            except BaseException:
                self._dirty = {**dirty, **self._dirty}  # written again once writes work
                raise

    def _ride(self) -> None:
        """The waiting rows, into the records' commit that is about to come."""
        self.flush_workers(commit=False)

    # ------------------------------------------------------------ scoring

    async def score(self, exp_id: int, files: Files, repeats: int, tier: Tier,
                    more: Callable[[list[Evaluation]], bool] | None = None,
                    ) -> tuple[list[Evaluation], str]:
        """Evaluate a version `repeats` times on one slot of the tier's group; `more` (the
        policy's sequential test) may end the repeats sooner; a slot that fails hands the
        whole evaluation to another (bounded), so one result is recorded."""
        self.ctx.cancellable += 1  # a stop cancels evaluations (deciding runs to the end)
        try:
            with metered(self.ctx, exp_id) as spent:  # engine/spend.py: what model calls cost
                evals, worker = await self._score(exp_id, files, repeats, tier, more)
            return settle(evals, spent), worker
        finally:
            self.ctx.cancellable -= 1

    async def _score(self, exp_id: int, files: Files, repeats: int, tier: Tier,
                     more: Callable[[list[Evaluation]], bool] | None,
                     ) -> tuple[list[Evaluation], str]:
        pool = self.pool
        pool.warm_up()
        tried: list[str] = []
        reason = "no worker"
        for attempt in range(1, pool.max_tries + 1):
            name = ""
            try:
                async with pool.slot(f"#{exp_id}", group=tier.group, avoid=tried) as worker:
                    name = worker.name
                    tried.append(name)
                    results = await self._evaluate_on(worker, exp_id, files, repeats, tier,
                                                      more)
                self._notes(worker)
                return results, getattr(worker, "recorded_name", name)  # + SLURM's job ids
            except WorkerFailed as exc:
                reason = f"{name}: {exc.reason}"
                retrying = attempt < pool.max_tries
                self.ctx.log(f"#{exp_id}: worker {name} failed ({exc.reason}); " +
                             ("trying another worker" if retrying
                              else f"giving up after {attempt} tries"),
                             level="warning", exp_id=exp_id)
            except NoWorker as exc:
                reason = str(exc)
                break
        tries = f" after {len(tried)} tries" if len(tried) > 1 else ""
        error = f"no worker could finish the evaluation{tries}: {reason}"
        return [Evaluation(CRASHED, error=error)], tried[-1] if tried else ""

    async def _evaluate_on(self, worker: Worker, exp_id: int, files: Files, repeats: int,
                           tier: Tier, more: Callable[[list[Evaluation]], bool] | None,
                           ) -> list[Evaluation]:
        ctx = self.ctx

        def sink(line: str) -> None:
            ctx.log(line, source=worker.name, exp_id=exp_id)

        folder, synced, staged = self.folders.take(worker.name)
        small = self._staging.inline
        started = time.perf_counter()
        if staged == files:  # while the last candidate ran (engine/ahead.py)
            pass
        elif small:
            ctx.workspace.stage(files, folder, synced=synced)
        else:  # a big workspace: keep the event loop (other slots, steering) responsive
            await asyncio.to_thread(ctx.workspace.stage, files, folder)
        if not synced:  # (staging into a synced folder says nothing of the workspace's size)
            self._staging.add(time.perf_counter() - started)
        results: list[Evaluation] = []
        async with worker.open(folder) as session:
            session = tier.session(session)
            for attempt in range(repeats):
                started = time.monotonic()
                # Work that can wait for the evaluation to be running: the last round's
                # records, and (small workspaces) syncing this slot's other folder.
                ctx.ledger.records.write_once_started()
                if small and attempt == 0:
                    once_started(self._sync_spare, worker.name, exp_id)
                try:
                    evaluation = await tier.evaluator.evaluate(session, sink)
                except LLMUnavailable as exc:  # a judge or producer gave up
                    evaluation = interrupted_evaluation(ctx, exc)  # engine/outage.py
                evaluation.duration = evaluation.duration or time.monotonic() - started
                results.append(evaluation)
                if evaluation.status != "ok":
                    break
                if more is not None and not more(results):
                    break
        return results

    def _sync_spare(self, slot: str, exp_id: int) -> None:
        """The slot's other folder, brought back to the workspace's state while `exp_id` is
        evaluated; with the next candidate staged in it, if the loop could propose it."""
        started = time.perf_counter()
        self.folders.sync_spare(slot)
        self._staging.add(time.perf_counter() - started)  # grown big: use a thread
        if self.pool.size == 1:  # (the next candidate goes to this slot)
            files = self.think_ahead(exp_id)
            if files is not None:
                self.folders.stage_spare(slot, files)

    def _notes(self, worker: Worker) -> None:
        host = getattr(worker, "host", None)
        while host is not None and host.notes:
            self.ctx.log(host.notes.pop(0), level="warning", source=worker.name)
