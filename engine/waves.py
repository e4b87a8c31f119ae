"""Waves and tiers: how one round of candidates is proposed and spread over the worker pool.

    plain wave    propose K; each starts evaluating the moment it exists (so proposing the
                  next one overlaps with the slots' work) → the loop settles all K
    tiered wave   propose K → screen each in the cheap tier, with the best version screened
                  once for reference → the screened-out are recorded → the top_k that beat
                  the reference go to the full tier → the loop settles those

Scores are compared only within one tier and one worker group. An evaluation whose worker
fails (not the evaluation itself) is retried on another slot, at most `pool.max_tries` times;
the slot is marked down, and every change of a slot's state is written to the store (a
`workers` row, plus an event when it goes down or comes back) so any UI can show it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.decide import aggregate, improvement
from engine.llm import LLMUnavailable
from engine.model import CRASHED, INTERRUPTED, RETEST, REVERTED, VETOED, Evaluation, Usage, Worker
from engine.outage import interrupted_evaluation
from engine.spend import claim
from engine.workers.faults import NoWorker, WorkerFailed
from engine.workers.pool import WorkerState
from engine.workers.tiers import FULL, SCREEN, Tier, build_tiers

if TYPE_CHECKING:
    from engine.loop import Candidate, RunLoop

#: Experiment kind of the best version re-scored in the screen tier (the reference).
REFERENCE = "reference"
#: Seconds a slot's busy/idle change may wait before it is written to the store.
WORKER_FLUSH_S = 0.2
#: Staging that took less than this last time runs inline: a thread hand-off costs ~0.1 ms,
#: more than syncing a small workspace's slot folder.
INLINE_STAGE_S = 0.002


def _usage(evals: list[Evaluation], extra: Usage | None = None) -> Usage:
    total = Usage()
    for e in evals:
        total.add(e.usage)
    if extra is not None:
        total.add(extra)
    return total


class WaveRunner:
    """Runs a RunLoop's waves, tiers and worker retries; the loop keeps deciding and recording."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop
        self.screen, self.full = build_tiers(loop.spec, loop.evaluator)
        #: (best experiment id, its screen-tier score) once measured.
        self.reference: tuple[int, float | None] | None = None
        #: Worker rows waiting to be written (slots change state twice a job: written in
        #: batches, like event lines).
        self._dirty: dict[str, tuple[WorkerState, str]] = {}
        self._flush: asyncio.TimerHandle | None = None
        #: How long the last staging took (0: try inline first).
        self._stage_s = 0.0
        loop.pool.on_change = self._worker_changed
        for state in loop.pool.states.values():
            self._dirty[state.name] = (state, "idle")
        self.flush_workers(replace=True)

    # ------------------------------------------------------------ workers

    def _worker_changed(self, state: WorkerState, change: str) -> None:
        loop = self.loop
        if change == "down":
            loop.log(f"worker {state.name} down: {state.reason} "
                     f"(next try in {state.retry_in:.0f}s)", level="warning", source=state.name)
        elif change == "up":
            loop.log(f"worker {state.name} up again", level="warning", source=state.name)
        # The row is made when written (a slot changes twice a job: most changes are
        # overwritten before a write); "stopped" is the one change its state does not show.
        self._dirty[state.name] = (state, change)
        if change in ("down", "up", "stopped"):
            self.flush_workers()  # news worth showing at once
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(WORKER_FLUSH_S,
                                                                self.flush_workers)

    @staticmethod
    def _row(state: WorkerState, change: str) -> dict:
        return {"name": state.name, "group": state.group,
                "status": "stopped" if change == "stopped" else state.status,
                "job": state.job, "reason": state.reason, "failures": state.failures,
                "retry_at": None if state.up else time.time() + state.retry_in,
                "queue": state.queue, "job_id": state.job_id}

    def flush_workers(self, replace: bool = False) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._dirty or replace:
            rows = [self._row(state, change) for state, change in self._dirty.values()]
            self._dirty = {}
            self.loop.store.set_workers(self.loop.run_id, rows, replace=replace)

    async def score(self, exp_id: int, files: dict[str, str], repeats: int,
                    tier: Tier | None = None,
                    more: Callable[[list[Evaluation]], bool] | None = None,
                    ) -> tuple[list[Evaluation], str]:
        """Evaluate a version `repeats` times on one slot of the tier's group; a slot that
        fails hands the whole evaluation to another (bounded), so one result is recorded."""
        loop, pool = self.loop, self.loop.pool
        pool.warm_up()
        tier = tier or self.full
        tried: list[str] = []
        reason = "no worker"
        for attempt in range(1, pool.max_tries + 1):
            name = ""
            try:
                async with pool.slot(f"#{exp_id}", group=tier.group, avoid=tried) as worker:
                    name = worker.name
                    tried.append(name)
                    results = await self._evaluate_on(worker, exp_id, files, repeats, tier, more)
                self._notes(worker)
                return results, getattr(worker, "recorded_name", name)  # + SLURM's job ids
            except WorkerFailed as exc:
                reason = f"{name}: {exc.reason}"
                retrying = attempt < pool.max_tries
                loop.log(f"#{exp_id}: worker {name} failed ({exc.reason}); " +
                         ("trying another worker" if retrying
                          else f"giving up after {attempt} tries"),
                         level="warning", exp_id=exp_id)
            except NoWorker as exc:
                reason = str(exc)
                break
        tries = f" after {len(tried)} tries" if len(tried) > 1 else ""
        error = f"no worker could finish the evaluation{tries}: {reason}"
        return [Evaluation(CRASHED, error=error)], tried[-1] if tried else ""

    async def _evaluate_on(self, worker: Worker, exp_id: int, files: dict[str, str],
                           repeats: int, tier: Tier,
                           more: Callable[[list[Evaluation]], bool] | None,
                           ) -> list[Evaluation]:
        loop = self.loop

        def sink(line: str) -> None:
            loop.log(line, source=worker.name, exp_id=exp_id)

        folder, synced, staged = loop.slot_folders.take(worker.name)
        small = self._stage_s < INLINE_STAGE_S
        started = time.perf_counter()
        if staged == files:  # while the last candidate ran (engine/ahead.py)
            pass
        elif small:
            loop.workspace.stage(files, folder, synced=synced)
        else:  # a big workspace: keep the event loop (other slots, steering) responsive
            await asyncio.to_thread(loop.workspace.stage, files, folder)
        if not synced:  # (staging into a synced folder says nothing of the workspace's size)
            self._stage_s = time.perf_counter() - started
        results: list[Evaluation] = []
        async with worker.open(folder) as session:
            session = tier.session(session)
            for attempt in range(repeats):
                started = time.monotonic()
                # Work that can wait for the evaluation to be running: the last round's
                # records, and (small workspaces) syncing this slot's other folder.
                loop.records.write_once_started()
                if small and attempt == 0:
                    asyncio.get_running_loop().call_soon(self._sync_spare, worker.name, exp_id)
                try:
                    evaluation = await tier.evaluator.evaluate(session, sink)
                except LLMUnavailable as exc:  # a judge or producer gave up
                    evaluation = interrupted_evaluation(loop, exc)  # engine/outage.py
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
        loop = self.loop
        started = time.perf_counter()
        loop.slot_folders.sync_spare(slot)
        self._stage_s = time.perf_counter() - started  # grown too big: stage in a thread
        if loop.pool.size == 1:  # (the next candidate goes to this slot)
            files = loop.ahead.think(exp_id)
            if files is not None:
                loop.slot_folders.stage_spare(slot, files)

    def _notes(self, worker: Worker) -> None:
        host = getattr(worker, "host", None)
        while host is not None and host.notes:
            self.loop.log(host.notes.pop(0), level="warning", source=worker.name)

    # ------------------------------------------------------------ waves

    async def run(self, wave: int) -> None:
        """Propose, evaluate (and screen) one wave, then let the loop settle it."""
        loop = self.loop
        while await loop._maybe_reevaluate(wave):  # (again while confirming a target)
            if loop.check_stop():
                return
        round_no = loop._max_round
        parent = loop.best_id
        assert parent is not None
        candidates: list[Candidate] = []
        tasks: list[asyncio.Task[None]] = []
        recorded: set[int] = set()
        finalists: list[Candidate] = []
        try:
            if self.screen is not None and not self._have_reference(parent):
                tasks.append(asyncio.create_task(self._screen_reference(parent, round_no, wave)))
                loop._evaluating = True
            for k in range(loop.spec.parallel):
                if loop.stopping or k and (loop.paused or loop.check_stop(mid_wave=True)):
                    break  # e.g. the cost in flight already reaches max_cost_usd
                cand = (loop._take_retest(round_no + k + 1, parent, wave)
                        or await loop._propose(round_no + k + 1, parent, wave))
                if cand is None:
                    continue
                candidates.append(cand)
                if self.screen is not None:
                    loop.store.set_tier(cand.exp_id, SCREEN)
                loop._evaluating = True
                if loop.spec.parallel == 1 and not tasks:
                    # One candidate, nothing to overlap with: evaluate it right here (a
                    # task, a yield and a gather per round add up when evaluations are fast).
                    await self._first_tier(cand)
                    break
                tasks.append(asyncio.create_task(self._first_tier(cand)))
                await asyncio.sleep(0)  # let it start while the next one is proposed
            if tasks:
                await asyncio.gather(*tasks)
            finalists = candidates
            if self.screen is not None and candidates:
                finalists = self._promote(candidates, recorded)
                full = [asyncio.create_task(loop._evaluate(c)) for c in finalists]
                tasks.extend(full)
                await asyncio.gather(*full)
                for cand in finalists:
                    if cand.evals:
                        cand.evals[0].metrics["screen_score"] = cand.screen_score
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # remote jobs get killed
            loop._evaluating = False
            loop.records.write()
            for cand in candidates:
                if cand.exp_id not in recorded:
                    loop.in_flight.pop(cand.exp_id, None)
                    spent = claim(loop, cand.exp_id, cand.mutation.usage)  # engine/spend.py
                    loop.store.finish_experiment(
                        cand.exp_id, verdict=INTERRUPTED, reason="stopped before the evaluation "
                        "finished", usage=spent, run_update=loop._run_totals(spent))
            for row in loop.store.in_flight(loop.run_id):  # an unfinished reference
                spent = claim(loop, row["id"])
                loop.store.finish_experiment(row["id"], verdict=INTERRUPTED,
                                             reason="stopped before the evaluation finished",
                                             usage=spent, run_update=loop._run_totals(spent))
            loop.notify()
            raise
        loop._evaluating = False
        if candidates:
            await loop._settle(finalists)

    async def _first_tier(self, cand: Candidate) -> None:
        if self.screen is None:
            await self.loop._evaluate(cand)
            return
        files = {**self.loop.best_files, **cand.mutation.files}
        cand.evals, cand.worker = await self.loop._score(cand.exp_id, files, 1, tier=self.screen)

    # ------------------------------------------------------------ screening

    def _have_reference(self, best_id: int) -> bool:
        if self.reference is not None and self.reference[0] == best_id:
            return True
        for row in self.loop.store.experiments(self.loop.run_id, newest_first=True, limit=200):
            if row["kind"] == REFERENCE and row["parent"] == best_id and row["score"] is not None:
                self.reference = (best_id, row["score"])
                return True
        return False

    async def _screen_reference(self, best_id: int, round_no: int, wave: int) -> None:
        """Score the best version in the screen tier: what screened candidates must beat."""
        loop = self.loop
        assert self.screen is not None
        loop.records.write()
        exp_id = loop.store.start_experiment(
            loop.run_id, round=round_no, kind=REFERENCE, parent=best_id, tier=SCREEN, wave=wave,
            description=f"best version (#{best_id}) screened for reference")
        evals, worker = await loop._score(exp_id, dict(loop.best_files), 1, tier=self.screen)
        first = evals[0]
        score = aggregate(evals, loop.spec.decide.aggregate) if first.status == "ok" else None
        usage = _usage(evals)
        loop.store.finish_experiment(
            exp_id, verdict=RETEST if score is not None else first.status,
            reason="screen-tier score of the best version" if score is not None else first.error,
            score=score, metrics=first.metrics, items=first.items, usage=usage,
            error=first.error, log_tail=first.log_tail, worker=worker,
            run_update=loop._run_totals(usage))
        self.reference = (best_id, score)
        if score is None:
            loop.log(f"the screen tier could not score the best version ({first.error}); "
                     "promoting by screen score alone", level="warning", exp_id=exp_id)

    def _promote(self, candidates: list[Candidate], recorded: set[int]) -> list[Candidate]:
        """Record the screened-out candidates; return the top_k that go to the full tier."""
        loop = self.loop
        direction = loop.direction
        ref = self.reference[1] if self.reference and self.reference[0] == loop.best_id else None
        top_k = loop.spec.promote.top_k if loop.spec.promote else 1
        ranked: list[tuple[float, Candidate]] = []
        for cand in candidates:
            bad = next((e for e in cand.evals if e.status != "ok"), None)
            cand.screen_score = aggregate(cand.evals, loop.spec.decide.aggregate)
            if cand.exp_id in loop.veto_in_flight:
                self._screened_out(cand, VETOED, "vetoed while in flight", ref, recorded)
            elif not cand.evals or bad is not None:
                bad = bad or Evaluation(CRASHED, error="no evaluation")
                self._screened_out(cand, bad.status, bad.error, ref, recorded)
            elif cand.screen_score is None:
                self._screened_out(cand, REVERTED, "no screen score", ref, recorded)
            elif cand.evals[0].metrics.get("guard_passed") == 0.0:
                self._screened_out(cand, REVERTED, "guard command failed (screen tier)", ref,
                                   recorded)
            else:
                gain = improvement(cand.screen_score, ref if ref is not None else 0.0, direction)
                ranked.append((gain, cand))
        ranked.sort(key=lambda r: -r[0])
        promoted = [c for gain, c in ranked if ref is None or gain > 0][:top_k]
        for gain, cand in ranked:
            shown = f"screen score {cand.screen_score:.4g}" + (
                "" if ref is None else f" vs the best version's {ref:.4g}")
            if cand in promoted:
                loop.store.set_tier(cand.exp_id, FULL)
                loop.log(f"#{cand.exp_id} promoted to the full tier ({shown})",
                         exp_id=cand.exp_id)
            elif ref is not None and gain <= 0:
                self._screened_out(cand, REVERTED, f"screened out: {shown}", ref, recorded)
            else:
                self._screened_out(cand, REVERTED, f"screened out: {shown}, not in the top "
                                   f"{top_k}", ref, recorded)
        return promoted

    def _screened_out(self, cand: Candidate, verdict: str, reason: str, ref: float | None,
                      recorded: set[int]) -> None:
        """Record a candidate that stops at the screen tier (log before anything moves)."""
        loop = self.loop
        evals = cand.evals or [Evaluation(CRASHED, error=reason)]
        first = evals[0]
        score = cand.screen_score if first.status == "ok" else None
        usage = _usage(evals, cand.mutation.usage)
        loop.in_flight.pop(cand.exp_id, None)
        cand.verdict, cand.reason = verdict, reason
        loop.records.write()
        loop.store.finish_experiment(
            cand.exp_id, verdict=verdict, reason=reason, score=score,
            delta=None if score is None or ref is None else round(score - ref, 12),
            metrics=first.metrics, items=first.items, usage=usage, error=first.error,
            log_tail=first.log_tail, worker=cand.worker, run_update=loop._run_totals(usage))
        recorded.add(cand.exp_id)
        loop.log(f"#{cand.exp_id} {verdict}: {cand.mutation.description} ({reason})",
                 exp_id=cand.exp_id)
        loop.mutator.feedback(cand.mutation, verdict)
