"""The hill-climbing loop for one run, top to bottom:

    resume → baseline → [ propose → stage → score → decide → record → apply ] until a stop rule

Each wave proposes `parallel` mutations from the same best version and scores them at once;
the best candidate that beats the incumbent is kept, the rest are reverted. Every experiment
is written to the store before anything is reverted or advanced (log before reset), and the
target files on disk only ever hold the best version.
"""

from __future__ import annotations

import asyncio
import errno
import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine import spec as specs
from engine.ahead import ProposingAhead
from engine.decide import aggregate, build_policy
from engine.evaluators import build_evaluator
from engine.evaluators.metric import constraint_breach
from engine.llm import LLMUnavailable, run_prices
from engine.model import (
    ADVANCING,
    BASELINE,
    CRASHED,
    FAILURES,
    INTERRUPTED,
    INVALID,
    KEPT,
    PINNED,
    RETEST,
    REVERTED,
    RUNNING,
    VETOED,
    Decision,
    Evaluation,
    ItemResult,
    Mutation,
    MutationError,
    Proposal,
    Usage,
)
from engine.mutators import build_mutator
from engine.noise import Retest, RetestQueue, reeval_due, restore_evaluations
from engine.outage import on_model_trouble
from engine.records import WaitingRecords
from engine.spend import metered, settle
from engine.stopping import cancellable_proposal, interrupted
from engine.store import Store
from engine.target import confirm_due, target_reached
from engine.waves import WaveRunner
from engine.workers.pool import WorkerPool, build_workers
from engine.workers.tiers import Tier
from engine.workspace import PathRefused, SlotFolders, Workspace, unified_diff

#: Experiments shown to a mutator (the newest); older ones stay in the store.
CHANGELOG_WINDOW = 200
#: How often a run paused by a full disk or read-only store checks whether writes work again.
STORAGE_PROBE_S = 5.0
#: Event lines buffered before they are written in one transaction.
EVENT_BATCH = 200
MAX_PENDING_EVENTS = 5_000


@dataclass
class Candidate:
    """One experiment in flight."""

    exp_id: int
    mutation: Mutation
    parent: int
    evals: list[Evaluation] = field(default_factory=list)
    verdict: str | None = None
    reason: str = ""
    worker: str = ""
    #: The policy's evidence for the verdict (stored as the experiment's decision_json).
    details: dict[str, Any] = field(default_factory=dict)
    #: Retests of this mutation before this one (0: a fresh proposal).
    attempt: int = 0
    #: Its score in the screen tier, in a tiered run.
    screen_score: float | None = None


class RunLoop:
    """Runs one spec's hill-climbing loop against the store."""

    def __init__(self, spec: specs.Spec, store: Store, run_id: int,
                 notify: Callable[[], None] = lambda: None) -> None:
        self.spec = spec
        self.store = store
        self.run_id = run_id
        self.notify = notify
        self.workspace = Workspace(spec.workspace, spec.target.files, spec.target.protected,
                                   spec.target.ignore, spec.name, spec.path)
        self.evaluator = build_evaluator(spec)
        self.mutator = build_mutator(spec)
        if hasattr(self.mutator, "bind_store"):  # e.g. playbooks that name earlier runs
            self.mutator.bind_store(store, run_id)
        self.policy = build_policy(spec.decide)
        self.retests = RetestQueue(spec.decide.retest)
        self.pool = WorkerPool(build_workers(spec.name, spec.workers))
        self.direction = spec.direction
        self.target = spec.target_score
        # Steering state (set by the host from commands).
        self.paused = False
        self.stopping = False
        self.stop_reason: str | None = None
        self.veto_in_flight: set[int] = set()
        self.in_flight: dict[int, Candidate] = {}
        # Best version.
        self.best_id: int | None = None
        self.best_files: dict[str, str] = {}
        self.best_evals: list[Evaluation] = []
        self.best_lock = asyncio.Lock()
        self._events: list[tuple[int | None, int | None, str, str, str]] = []
        self._wake = asyncio.Event()
        self._started = time.monotonic()
        self._elapsed_before = 0.0
        self._changelog: list[dict[str, Any]] | None = None
        self._failing: list[dict[str, Any]] = []
        self._failing_for: int | None = None
        self._max_round = 0  # highest round number started
        self._cost = 0.0  # USD spent by this run (the run row's cost_usd)
        self._baseline_cost: float | None = None  # the first experiment's cost, once known
        self._wave_task: asyncio.Task[str] | None = None
        #: The next candidate, proposed and staged while the last one is evaluated.
        self.ahead = ProposingAhead(self)
        self._lean_proposal: tuple[dict[str, str], list[Evaluation], Proposal] | None = None
        self._wave_no = 0
        #: Each worker slot's reusable candidate folders.
        self.slot_folders = SlotFolders(self.workspace, spec.name)
        self.failed = False
        self._evaluating = False
        #: A problem a person must see (full disk...); None when all is well.
        self.alert: str | None = None
        #: Records of reverted candidates, written while the next evaluation runs.
        self.records = WaitingRecords(store, run_id)
        #: Waves, tiers and worker retries (engine/waves.py).
        self.waves = WaveRunner(self)

    # ------------------------------------------------------------ events

    def log(self, line: str, *, level: str = "info", source: str = "engine",
            exp_id: int | None = None) -> None:
        self._events.append((self.run_id, exp_id, level, source, line))
        if len(self._events) >= EVENT_BATCH:
            self.flush_events()

    def flush_events(self) -> None:
        self.records.write_quietly()  # their event lines come first
        if self._events:
            # Keep the lines if the write fails (full disk), but never more than a bounded few.
            self._events = self._events[-MAX_PENDING_EVENTS:]
            self.store.add_events(self._events)
            self._events = []

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------ resume

    def resume(self) -> None:
        """Reconcile the store and the workspace after any stop, clean or not (invariant 3)."""
        run = self.store.get_run(self.run_id)
        assert run is not None
        self._elapsed_before = run["elapsed"] or 0.0
        self._started = time.monotonic()
        self._cost = run["cost_usd"] or 0.0
        self._max_round = self.store.last_round(self.run_id)
        for row in self.store.in_flight(self.run_id):
            self.store.finish_experiment(
                row["id"], verdict=INTERRUPTED,
                reason="the engine stopped before this experiment finished")
        best = self.store.experiment(run["best_experiment"]) if run["best_experiment"] else None
        best_files = self.store.version_files(best["id"]) if best else {}
        self.workspace.clear_stale_git_locks()
        # Target files holding the best version are an advance a kill interrupted, not the
        # user's edits: only other uncommitted changes are refused.
        self.workspace.check_clean(allowed=best_files)
        branch = self.workspace.prepare_branch()
        self.store.update_run(self.run_id, branch=branch, status="running",
                              started=run["started"] or time.time())
        prices = run_prices(self.spec)
        if prices:  # the price table this run's costs are computed with
            self.store.update_run(self.run_id, prices_json=json.dumps(prices))
        if best is not None:
            self.best_id = best["id"]
            self.best_files = best_files
            self.best_evals = self._best_evaluations(best)
            # Finish an advance that a kill interrupted: files, then the commit.
            self.workspace.write_best(self.best_files)
            trailer = f"Experiment: {best['id']}"
            if self.workspace.is_git:
                if trailer in self.workspace.head_message():
                    sha = self.workspace.head()
                else:
                    sha = self.workspace.commit(self._commit_message(best), trailer)
                if sha and best["git_commit"] != sha:
                    self.store.set_commit(best["id"], sha)
        self._resume_decisions(run)

    def _stored_evaluation(self, row: dict[str, Any]) -> Evaluation:
        items = [ItemResult(r["item"], None if r["passed"] is None else bool(r["passed"]),
                            r["input"] or "", r["sample"], r["evidence"] or "")
                 for r in self.store.item_results(row["id"])]
        return Evaluation("ok", score=row["score"], items=items)

    def _commit_message(self, row: dict[str, Any]) -> str:
        if row["kind"] == BASELINE:
            return f"autoresearch {self.spec.name}: baseline"
        return row["description"] or f"experiment {row['id']}"

    # ------------------------------------------------------------ main loop

    async def run(self) -> str:
        """Run until a stop rule or a stop command; returns the stop reason."""
        try:
            self.resume()
            while True:
                # The rounds run in a task of their own, which a stop cancels (cancel_wave)
                # while an evaluation is in flight; one task for many rounds, not one each.
                self._wave_task = asyncio.create_task(self._rounds())
                try:
                    self.stop_reason = await self._wave_task
                    break
                except asyncio.CancelledError:
                    if not self.stopping:
                        raise
                    self.stop_reason = "stopped"
                    break
                except (sqlite3.Error, OSError) as exc:
                    if not storage_trouble(exc):
                        raise
                    await self._wait_for_storage(exc)
        except BaselineFailed:
            self.failed = True
            raise
        finally:
            await self._finish()
        return self.stop_reason or "stopped"

    async def _rounds(self) -> str:
        """Baseline, then waves, until a stop rule applies; returns its reason."""
        while True:
            while self.paused and not self.stopping:
                self.records.write()
                self._wake.clear()
                await self._wake.wait()
            reason = self.check_stop()
            if reason:
                return reason
            if self.best_id is None:
                await self._baseline()
            else:
                self._wave_no += 1
                await self._wave(self._wave_no)

    async def _finish(self) -> None:
        await self.pool.close()
        self.slot_folders.discard()
        elapsed = self._elapsed_before + time.monotonic() - self._started
        status = ("failed" if self.failed else
                  "stopped" if self.stopping and self.stop_reason in (None, "stopped") else "done")
        try:
            self.records.write()
            self.flush_events()
            self.store.update_run(self.run_id, status=status,
                                  stop_reason=self.stop_reason or "stopped",
                                  finished=time.time(), elapsed=elapsed, engine_pid=None)
        except (sqlite3.Error, OSError) as exc:
            if not storage_trouble(exc):
                raise
            self.alert = f"could not record the stop: {exc}"
        self.notify()

    async def _wait_for_storage(self, exc: BaseException) -> None:
        """The store or the disk refused a write: pause, probe, and pick up where the store
        says we are once it writes again (nothing half-recorded is trusted)."""
        self.alert = (f"paused: cannot write ({exc}); free disk space or fix permissions — "
                      f"the run resumes by itself when writes work again")
        self.notify()
        while not self.stopping:
            await asyncio.sleep(STORAGE_PROBE_S)
            try:
                self.store.update_run(self.run_id, heartbeat=time.time())
                self.records.write()  # outcomes decided before the trouble, then reconcile
                self.in_flight.clear()
                self.resume()
            except (sqlite3.Error, OSError) as again:
                if not storage_trouble(again):
                    raise
                continue
            self.alert = None
            self.log(f"storage works again after: {exc}", level="warning")
            self.notify()
            return

    async def _baseline(self) -> None:
        files = self.workspace.read_targets()
        exp_id = self.store.start_experiment(self.run_id, round=0, kind=BASELINE, parent=None,
                                             description="baseline", files=files)
        self.log("evaluating the baseline", exp_id=exp_id)
        self._evaluating = True  # a stop cancels it (model calls included)
        try:
            evaluation, worker = await self._score(exp_id, files, self.policy.baseline_repeats)
        except asyncio.CancelledError:
            interrupted(self, exp_id, "stopped before the baseline was scored")
            raise
        finally:
            self._evaluating = False
        if evaluation[0].status != "ok":
            err = evaluation[0].error
            self.store.finish_experiment(exp_id, verdict=evaluation[0].status, reason=err,
                                         error=err, log_tail=evaluation[0].log_tail, worker=worker,
                                         items=evaluation[0].items, usage=_usage(evaluation),
                                         run_update=self._run_totals(_usage(evaluation)))
            if self.paused:  # model trouble paused the run (engine/outage.py): not a failure
                return
            self.stop_reason = f"baseline failed: {err}"
            raise BaselineFailed(self.stop_reason)
        score = aggregate(evaluation, self.spec.decide.aggregate)
        first = evaluation[0]
        noise = self.policy.measure_noise(evaluation)
        self.store.finish_experiment(
            exp_id, verdict=BASELINE, reason="starting point", score=score, metrics=first.metrics,
            items=first.items, usage=_usage(evaluation), log_tail=first.log_tail, worker=worker,
            best_files=files,
            run_update={**self._run_totals(_usage(evaluation)), "best_experiment": exp_id,
                        "best_score": score, "baseline_score": score,
                        "noise_json": noise.to_json()})
        self.store.set_decision(exp_id, {"scores": noise.scores, "repeats": noise.repeats})
        self.log(noise.describe(), exp_id=exp_id)
        self.best_id, self.best_files = exp_id, files
        self.best_evals = [e for e in evaluation if e.status == "ok"]
        sha = self.workspace.commit(f"autoresearch {self.spec.name}: baseline", f"Experiment: {exp_id}")
        if sha:
            self.store.set_commit(exp_id, sha)
        self.log(f"baseline score {score:.4g}", exp_id=exp_id)
        self.notify()

    async def _wave(self, wave: int) -> None:
        await self.waves.run(wave)

    def cancel_wave(self) -> None:
        """Abandon the evaluations in flight (they are recorded as interrupted)."""
        # Only evaluations are abandoned: deciding and recording always run to the end.
        if self._evaluating and self._wave_task is not None and not self._wave_task.done():
            self._wave_task.cancel()

    async def _propose(self, round_no: int, parent: int, wave: int) -> Candidate | None:
        self._max_round = max(self._max_round, round_no)
        ahead = self.ahead.take()
        try:
            if ahead is not None:  # proposed, checked and staged already
                mutation = ahead.mutation
            else:
                mutation = await cancellable_proposal(self, round_no, parent, wave)
                self._check(mutation)
        except LLMUnavailable as exc:  # an outage is not a bad idea: no experiment, no round
            self._max_round = min(self._max_round, round_no - 1)
            on_model_trouble(self, exc)
            return None
        except (MutationError, PathRefused) as exc:
            self.records.write()  # keep the store in order
            usage = getattr(exc, "usage", None) or Usage()
            desc = getattr(exc, "description", "") or "invalid mutation"
            exp_id = self.store.start_experiment(self.run_id, round=round_no, kind="candidate",
                                                 parent=parent, description=desc, wave=wave)
            self.store.finish_experiment(exp_id, verdict=INVALID, reason=str(exc), error=str(exc),
                                         usage=usage, run_update=self._run_totals(usage))
            self.log(f"round {round_no}: invalid mutation: {exc}", level="warning", exp_id=exp_id)
            self.notify()
            return None
        if self.stopping:  # a stop came while proposing: no new experiment starts after it
            return None
        row: dict[str, Any] = dict(
            round=round_no, kind="candidate", parent=parent, description=mutation.description,
            rationale=mutation.rationale, wave=wave,
            diff=unified_diff(self.best_files, {**self.best_files, **mutation.files}))
        # Inserted now for its id, committed while the evaluation runs with the last round's
        # records; its files are added then (the evaluation runs on its own copy of them).

        def complete() -> None:
            row["files"] = mutation.files  # (a row inserted again carries them)
            self.store.add_versions(exp_id, mutation.files)

        exp_id = self.records.start(lambda again: self.store.start_experiment(
            self.run_id, commit=False, exp_id=again, **row), complete)
        cand = Candidate(exp_id, mutation, parent)
        self.in_flight[exp_id] = cand
        self.notify()
        return cand

    def _check(self, mutation: Mutation) -> None:
        """Refuse a mutation of files it may not touch, or one that changes nothing."""
        self.workspace.confine(mutation.files)
        if all(self.best_files.get(p) == c for p, c in mutation.files.items()):
            raise MutationError("the mutation changes nothing")

    def _proposal(self) -> Proposal:
        """What the mutator sees; the changelog is read incrementally, not re-read every round."""
        if not getattr(self.mutator, "reads_history", True):  # e.g. the params mutator
            # The same one until the best version moves (its files and evaluations are
            # replaced then, never changed in place): asked for twice a round.
            made = self._lean_proposal
            if made is None or made[0] is not self.best_files or made[1] is not self.best_evals:
                made = self._lean_proposal = (self.best_files, self.best_evals, Proposal(
                    self.spec.name, dict(self.best_files), [], [], [], aggregate(self.best_evals)))
            return made[2]
        self.records.write()  # the changelog it reads must hold every verdict
        if self._changelog is None:
            self._changelog = self.store.changelog(self.run_id, CHANGELOG_WINDOW)
        else:
            # Rows still running may change: keep only what came before the first of them.
            running = [r["id"] for r in self._changelog if r["verdict"] == RUNNING]
            settled = min(running) - 1 if running else (
                self._changelog[-1]["id"] if self._changelog else 0)
            kept = [r for r in self._changelog if r["id"] <= settled]
            fresh = self.store.changelog(self.run_id, CHANGELOG_WINDOW, after_id=settled)
            self._changelog = (kept + fresh)[-CHANGELOG_WINDOW:]
        if self._failing_for != self.best_id:
            self._failing = [r for r in self.store.item_results(self.best_id)
                             if r["passed"] != 1] if self.best_id else []
            self._failing_for = self.best_id
        guidance = [c["argument"] for c in reversed(self.store.commands(self.run_id, limit=20))
                    if c["verb"] == "guide" and c["applied"] and c["argument"]]
        return Proposal(self.spec.name, dict(self.best_files), list(self._changelog),
                        list(self._failing), guidance, aggregate(self.best_evals))

    def forget_changelog(self) -> None:
        """Verdicts of old experiments changed (veto, pin): read the changelog afresh."""
        self._changelog = None

    async def _evaluate(self, cand: Candidate) -> None:
        files = {**self.best_files, **cand.mutation.files}
        evals, cand.worker = await self._score(
            cand.exp_id, files, self.policy.max_repeats,
            more=lambda got: self.policy.keep_going(got, self.best_evals, self.direction))
        cand.evals = evals

    async def _score(self, exp_id: int, files: dict[str, str], repeats: int,
                     more: Callable[[list[Evaluation]], bool] | None = None,
                     tier: Tier | None = None) -> tuple[list[Evaluation], str]:
        """Evaluate this version up to `repeats` times on one worker slot of the tier's group
        (the full tier by default), staged in that slot's own folder; `more` (the policy's
        sequential test) may end the repeats sooner; a failing worker hands it on."""
        with metered(self, exp_id) as spent:  # engine/spend.py: what model calls cost
            evals, worker = await self.waves.score(exp_id, files, repeats, tier, more)
        return settle(evals, spent), worker

    async def _settle(self, candidates: list[Candidate]) -> None:
        """Decide every candidate of a wave, record all, then advance the best (log before reset)."""
        async with self.best_lock:
            winner: Candidate | None = None
            best_gain = 0.0
            for cand in candidates:
                self.in_flight.pop(cand.exp_id, None)
                first = cand.evals[0] if cand.evals else Evaluation(CRASHED, error="no evaluation")
                if cand.exp_id in self.veto_in_flight:
                    cand.verdict, cand.reason = VETOED, "vetoed while in flight"
                elif first.status != "ok" or any(e.status != "ok" for e in cand.evals):
                    bad = next(e for e in cand.evals if e.status != "ok") if cand.evals else first
                    cand.verdict, cand.reason = bad.status, bad.error
                elif cand.parent != self.best_id:
                    cand.verdict, cand.reason = REVERTED, "its parent is no longer the best version"
                elif first.metrics.get("guard_passed") == 0.0:
                    cand.verdict, cand.reason = REVERTED, "guard command failed"
                elif breach := constraint_breach(self.spec.evaluate, cand.evals):
                    cand.verdict, cand.reason = REVERTED, breach
                else:
                    decision = self.policy.decide(cand.evals, self.best_evals, self.direction)
                    cand.verdict, cand.reason = decision.verdict, decision.reason
                    cand.details.update(decision.details)
                    gain = decision.details.get("gain", 0.0)
                    if decision.verdict == KEPT and (winner is None or gain > best_gain):
                        winner, best_gain = cand, gain
            for cand in candidates:
                if cand.verdict == KEPT and cand is not winner:
                    cand.verdict, cand.reason = REVERTED, f"#{winner.exp_id} did better in this wave"
            self._offer_retests(candidates, winner)
            best_score = aggregate(self.best_evals, self.spec.decide.aggregate)
            for cand in candidates:
                self._record(cand, best_score, cand is winner)
            if winner is not None:
                await self._advance(winner)
        for cand in candidates:
            if not self.ahead.settle(cand):  # (else its feedback was given ahead)
                self.mutator.feedback(cand.mutation, cand.verdict or CRASHED)
        self.notify()

    def _record(self, cand: Candidate, best_score: float | None, won: bool) -> None:
        evals = cand.evals or [Evaluation(CRASHED)]
        first = evals[0]
        score = aggregate(evals, self.spec.decide.aggregate) if first.status == "ok" else None
        delta = None if score is None or best_score is None else round(score - best_score, 12)
        usage = _usage(evals)
        usage.add(cand.mutation.usage)
        run_update = self._run_totals(usage)
        best_files = None
        if won:
            best_files = {**self.best_files, **cand.mutation.files}
            run_update.update(best_experiment=cand.exp_id, best_score=score)
        if self.policy.learn(evals):
            run_update["noise_json"] = self.policy.noise.to_json()
        shown = "-" if score is None else f"{score:.4g}"
        self.log(f"#{cand.exp_id} {cand.verdict}: {cand.mutation.description} "
                 f"(score {shown}; {cand.reason})", exp_id=cand.exp_id)
        # One transaction: the outcome, its decision details and the pending event lines;
        # a keep's is written now (it becomes the best version next), others while the next
        # evaluation runs (engine/records.py).
        events, self._events = self._events[-MAX_PENDING_EVENTS:], []
        self.records.add(cand.exp_id, dict(
            verdict=cand.verdict or CRASHED, reason=cand.reason, score=score,
            delta=delta, metrics=first.metrics, items=first.items, usage=usage,
            error=first.error, log_tail=first.log_tail, worker=cand.worker,
            best_files=best_files, run_update=run_update, decision=cand.details,
            events=events))
        if won:
            self.records.write()

    def _run_totals(self, usage: Usage) -> dict[str, Any]:
        """The run row's counters after one more experiment (kept in memory, written with it)."""
        self._cost += usage.cost_usd
        return {"rounds": self._max_round, "cost_usd": self._cost,
                "heartbeat": time.time(),
                "elapsed": self._elapsed_before + time.monotonic() - self._started}

    async def _advance(self, cand: Candidate) -> None:
        """Make the kept candidate the best: files on disk, then a commit on the run's branch."""
        self.best_files = {**self.best_files, **cand.mutation.files}
        self.best_evals = self.policy.incumbent(cand.evals)
        self.best_id = cand.exp_id
        await self._write_and_commit(cand.exp_id, cand.mutation.description)

    async def _write_and_commit(self, exp_id: int, message: str) -> None:
        """Files first, then the commit (in a thread: git is slow); the store stays on this loop."""
        files = dict(self.best_files)

        def work() -> str | None:
            self.workspace.write_best(files)
            return self.workspace.commit(message, f"Experiment: {exp_id}")

        sha = await asyncio.to_thread(work)
        if sha:
            self.store.set_commit(exp_id, sha)

    # ------------------------------------------------------------ stop rules

    def check_stop(self, *, mid_wave: bool = False) -> str | None:
        """The stop rule that applies now, if any. `mid_wave`: between two proposals of one
        wave, where nothing has been recorded since the last check, so the rules that read
        recent outcomes (target streak, plateau, failures) are skipped."""
        if self.stopping:
            return "stopped"
        stop = self.spec.stop
        needs_rows = not mid_wave and (
            self.target is not None or stop.plateau or stop.max_failures)
        rows = self.store.recent_outcomes(
            self.run_id, max(stop.streak, stop.plateau or 0, stop.max_failures or 0, 1)
        ) if needs_rows else []
        if self.records.waiting:  # outcomes decided but not yet written
            rows = [{**r, **{k: waiting[k] for k in ("verdict", "score")}}
                    if (waiting := self.records.outcome(r["id"])) else r for r in rows]
        if self.target is not None and not mid_wave and (reached := target_reached(self)):
            return reached
        if stop.max_rounds is not None and self._max_round >= stop.max_rounds:
            return f"max rounds ({stop.max_rounds}) reached"
        elapsed = self._elapsed_before + time.monotonic() - self._started
        if stop.max_minutes is not None and elapsed >= stop.max_minutes * 60:
            return f"max time ({stop.max_minutes:g} min) reached"
        if stop.max_cost_usd is not None and (
                self._cost + self.in_flight_cost() >= stop.max_cost_usd):
            return f"max cost (${stop.max_cost_usd:g}) reached"
        candidates = [r for r in rows if r["kind"] == "candidate"]
        if stop.plateau is not None and len(candidates) >= stop.plateau and not any(
                r["verdict"] in ADVANCING for r in candidates[: stop.plateau]):
            return f"plateau: {stop.plateau} rounds without a keep"
        if stop.max_failures is not None and len(candidates) >= stop.max_failures and all(
                r["verdict"] in FAILURES for r in candidates[: stop.max_failures]):
            return f"{stop.max_failures} failures in a row"
        # Last: the mutator has nothing left to propose (every value combination tried).
        return getattr(self.mutator, "finished", None)

    def in_flight_cost(self) -> float:
        """Money committed but not yet recorded: the in-flight candidates' mutations, plus
        their evaluations estimated at the baseline's cost."""
        if not self.in_flight:
            return 0.0
        if self._baseline_cost is None:  # read once it is final: asked before every proposal
            first = self.store.experiments(self.run_id, limit=1)
            if first and first[0]["verdict"] != RUNNING:
                self._baseline_cost = first[0]["cost_usd"] or 0.0
        per_eval = self._baseline_cost or 0.0
        return sum(c.mutation.usage.cost_usd + per_eval for c in self.in_flight.values())

    def pause_for_error(self, message: str) -> None:
        """A service the run needs failed repeatedly: pause this run (others go on), say why."""
        self.paused = True
        self.store.update_run(self.run_id, status="paused", stop_reason=f"paused: {message}")
        self.log(f"paused: {message}", level="error")
        self.flush_events()
        self.notify()

    # ------------------------------------------------------------ steering

    async def veto(self, exp_id: int | None) -> str:
        """Veto the experiment in flight, or revert a kept one and what was built on it."""
        if exp_id is None or exp_id in self.in_flight:
            targets = [exp_id] if exp_id is not None else list(self.in_flight)
            if not targets:
                return "nothing in flight to veto"
            self.veto_in_flight.update(targets)
            return f"vetoed in flight: {', '.join(f'#{t}' for t in targets)}"
        async with self.best_lock:
            self.records.write()
            self.forget_changelog()
            row = self.store.experiment(exp_id)
            if row is None or row["run_id"] != self.run_id:
                return f"#{exp_id}: no such experiment in this run"
            if row["verdict"] == BASELINE:
                return "the baseline cannot be vetoed"
            if row["verdict"] == PINNED:
                return f"#{exp_id} is pinned"
            if row["verdict"] != KEPT or row["kind"] == "imported":  # (no files: only banned)
                self.store.set_verdict(exp_id, VETOED, "vetoed: banned from later proposals")
                return f"#{exp_id} banned"
            chain = self.store.advancing_chain(self.run_id)
            later = [r for r in chain if r["id"] > exp_id]
            if any(r["verdict"] == PINNED for r in later):
                return f"#{exp_id} has a pinned experiment built on it"
            before = [r for r in chain if r["id"] < exp_id]
            new_best = before[-1]
            for r in [row, *later]:
                self.store.set_verdict(r["id"], VETOED, "vetoed" if r is row
                                       else f"built on vetoed #{exp_id}")
            await self._make_best(new_best, f"veto #{exp_id}: {row['description']}")
            return f"reverted #{exp_id}" + (f" and {len(later)} built on it" if later else "")

    async def pin(self, exp_id: int) -> str:
        """Keep an experiment whatever its score and protect it from later reverts."""
        async with self.best_lock:
            self.records.write()
            self.forget_changelog()
            row = self.store.experiment(exp_id)
            if row is None or row["run_id"] != self.run_id:
                return f"#{exp_id}: no such experiment in this run"
            if row["kind"] == "imported":
                return f"#{exp_id} was imported: its files are not in the store"
            if row["verdict"] in (KEPT, BASELINE, PINNED):
                self.store.set_verdict(exp_id, PINNED, "pinned")
                return f"#{exp_id} pinned"
            if row["score"] is None or row["parent"] is None:
                return f"#{exp_id} has no score to keep"
            files = {**self.store.version_files(row["parent"]), **self.store.version_files(exp_id)}
            files = {p: files[p] for p in self.spec.target.files if p in files}
            self.store.finish_experiment(exp_id, verdict=PINNED, reason="pinned by hand",
                                         score=row["score"], delta=row["delta"],
                                         metrics=None if not row["metrics_json"] else
                                         json.loads(row["metrics_json"]),
                                         items=self._stored_evaluation(row).items,
                                         duration=row["duration"], best_files=files)
            await self._make_best(self.store.experiment(exp_id), f"pin #{exp_id}: {row['description']}")
            return f"#{exp_id} pinned and made the best version"

    async def _make_best(self, row: dict[str, Any], message: str) -> None:
        self.best_id = row["id"]
        self.best_files = self.store.version_files(row["id"])
        self.best_evals = self._best_evaluations(row)
        self.store.update_run(self.run_id, best_experiment=row["id"], best_score=row["score"])
        await self._write_and_commit(row["id"], message)
        self.log(message)
        self.notify()

    # ------------------------------------------------------------ noise: re-evaluations, retests

    def _best_evaluations(self, row: dict[str, Any]) -> list[Evaluation]:
        """A best version's evaluations from the store: its newest re-evaluation if any, else
        its own repeats (their scores are in decision_json), item results on the first."""
        reeval = self.store.last_reeval(self.run_id, row["id"])
        source = reeval if reeval and reeval["score"] is not None else row
        return restore_evaluations(source["score"], source.get("decision_json"),
                                   self._stored_evaluation(source).items)

    def _resume_decisions(self, run: dict[str, Any]) -> None:
        """After any stop: the noise floor measured at the start, and the retests still due."""
        self.policy.restore_noise(run["noise_json"])
        for row in self.store.pending_retests(self.run_id):
            attempt = json.loads(row["decision_json"] or "{}").get("attempt", 0)
            description = re.sub(r"^retest of #\d+: ", "", row["description"])
            mutation = Mutation(description, self.store.version_files(row["id"]),
                                row["rationale"] or "")
            self.retests.waiting.append(Retest(row["id"], mutation, row["parent"], attempt))

    async def _maybe_reevaluate(self, wave: int) -> bool:
        """Re-evaluate the best version once it has stood `reeval_every` candidates, so a
        lucky best does not stand forever (the policy decides what its fresh evaluations
        replace). True when it did: the re-evaluation used a round."""
        best_id = self.best_id
        if best_id is None:
            return False
        if not confirm_due(self):  # engine/target.py: a best at the target is confirmed first
            if not self.spec.decide.reeval_every:
                return False
            self.records.write()  # it counts finished candidates
            last = self.store.last_reeval(self.run_id, best_id)
            since = self.store.candidates_since(self.run_id, last["id"] if last else best_id)
            if not reeval_due(self.spec.decide.reeval_every, since):
                return False
        self._max_round += 1
        exp_id = self.store.start_experiment(
            self.run_id, round=self._max_round, kind="reeval",
            parent=best_id, description=f"re-evaluate #{best_id}", wave=wave)
        self.log(f"re-evaluating the best version #{best_id}", exp_id=exp_id)
        self.notify()
        self._evaluating = True
        try:
            evals, worker = await self._score(exp_id, dict(self.best_files),
                                              self.policy.baseline_repeats)
        except asyncio.CancelledError:
            interrupted(self, exp_id, "stopped before the re-evaluation finished")
            raise
        finally:
            self._evaluating = False
        async with self.best_lock:
            ok = [e for e in evals if e.status == "ok"]
            first = evals[0] if evals else Evaluation(CRASHED, error="no evaluation")
            old = aggregate(self.best_evals, self.spec.decide.aggregate)
            score = aggregate(ok, self.spec.decide.aggregate)
            if score is None:
                verdict, reason, details = first.status, first.error or "no score", {}
            else:
                decision = self.policy.reevaluate(self.best_evals, ok, self.direction)
                verdict, reason, details = decision.verdict, decision.reason, decision.details
            applied = score is not None and self.best_id == best_id
            if score is not None and not applied:
                reason += "; not applied: the best version changed meanwhile"
            run_update = self._run_totals(_usage(evals))
            incumbent = self.policy.reevaluated(self.best_evals, ok)
            if applied:
                run_update["best_score"] = aggregate(incumbent, self.spec.decide.aggregate)
            self.store.finish_experiment(
                exp_id, verdict=verdict, reason=reason, score=score,
                delta=None if score is None or old is None else round(score - old, 12),
                metrics=first.metrics, items=first.items, usage=_usage(evals), error=first.error,
                log_tail=first.log_tail, worker=worker, run_update=run_update)
            if details:
                self.store.set_decision(exp_id, details)
            if applied:
                self.best_evals = incumbent
            if self.policy.learn(ok):
                self.store.update_run(self.run_id, noise_json=self.policy.noise.to_json())
        self.log(f"#{exp_id} {verdict}: {reason}", exp_id=exp_id)
        self.notify()
        return True

    def _take_retest(self, round_no: int, parent: int, wave: int) -> Candidate | None:
        """A marginal candidate re-run as a new experiment (before new proposals); the first
        one keeps its `retest` verdict, the new one references it and gets its own."""
        entry, stale = self.retests.next(parent)
        if entry is not None or stale:
            self.records.write()  # the retested experiments' own records come first
        if stale:
            self.forget_changelog()
        for old in stale:
            row = self.store.experiment(old.exp_id)
            self.store.set_verdict(old.exp_id, REVERTED, f"{(row or {}).get('reason') or ''}; "
                                   "not retested: the best version changed")
        if entry is None:
            return None
        self._max_round = max(self._max_round, round_no)
        m = entry.mutation
        # A fresh Mutation: the proposal's cost was counted once, with the first experiment.
        mutation = Mutation(m.description, dict(m.files), m.rationale, dict(m.state))
        attempt = entry.attempt + 1
        exp_id = self.store.start_experiment(
            self.run_id, round=round_no, kind="candidate", parent=parent,
            description=f"retest of #{entry.exp_id}: {m.description}", rationale=m.rationale,
            diff=unified_diff(self.best_files, {**self.best_files, **m.files}), wave=wave,
            files=m.files)
        self.store.set_decision(exp_id, {"retest_of": entry.exp_id, "attempt": attempt})
        cand = Candidate(exp_id, mutation, parent, attempt=attempt)
        cand.details.update(retest_of=entry.exp_id, attempt=attempt)
        self.in_flight[exp_id] = cand
        self.log(f"round {round_no}: retesting #{entry.exp_id}", exp_id=exp_id)
        self.notify()
        return cand

    def _offer_retests(self, candidates: list[Candidate], winner: Candidate | None) -> None:
        """Queue the wave's marginal candidates for a retest (or revert them: too many
        attempts, a full queue, or a winner in this wave that moves the best on)."""
        for cand in candidates:
            if cand.verdict == RETEST:
                decision = self.retests.offer(
                    Decision(RETEST, cand.reason, cand.details), cand.exp_id, cand.mutation,
                    cand.parent, cand.attempt, winner.exp_id if winner else None)
                cand.verdict, cand.reason = decision.verdict, decision.reason


def storage_trouble(exc: BaseException) -> bool:
    """A write failed for a reason outside the run: full disk, read-only file, a locked store."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(k in text for k in ("full", "readonly", "read-only", "disk i/o", "locked",
                                       "unable to open"))
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES)
    return False


class BaselineFailed(Exception):
    """The baseline could not be scored: the run cannot climb from it."""


def _usage(evals: list[Evaluation]) -> Usage:
    total = Usage()
    for e in evals:
        total.add(e.usage)
    return total
