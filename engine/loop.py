"""The hill-climbing loop for one run, top to bottom:

    resume → baseline → [ propose → stage → score → decide → record → apply ] until a stop rule

Each wave proposes `parallel` mutations from the same best version and scores them at once;
the best candidate that beats the incumbent is kept, the rest are reverted. Every experiment
is written to the store before anything is reverted or advanced (log before reset), and the
target files on disk only ever hold the best version.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine import spec as specs
from engine.decide import aggregate, build_policy, improvement
from engine.evaluators import build_evaluator
from engine.model import (
    ADVANCING,
    BASELINE,
    CRASHED,
    FAILURES,
    INTERRUPTED,
    INVALID,
    KEPT,
    PINNED,
    REVERTED,
    VETOED,
    Evaluation,
    ItemResult,
    Mutation,
    MutationError,
    Proposal,
    Usage,
)
from engine.mutators import build_mutator
from engine.store import Store
from engine.waves import WaveRunner
from engine.workers.pool import WorkerPool, build_workers
from engine.workers.tiers import Tier
from engine.workspace import PathRefused, Workspace, unified_diff

#: Experiments shown to a mutator (the newest); older ones stay in the store.
CHANGELOG_WINDOW = 200
#: Event lines buffered before they are written in one transaction.
EVENT_BATCH = 200


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
        self.policy = build_policy(spec.decide)
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
        self._wave_task: asyncio.Task[None] | None = None
        self.failed = False
        self._evaluating = False
        #: Waves, tiers and worker retries (engine/waves.py).
        self.waves = WaveRunner(self)

    # ------------------------------------------------------------ events

    def log(self, line: str, *, level: str = "info", source: str = "engine",
            exp_id: int | None = None) -> None:
        self._events.append((self.run_id, exp_id, level, source, line))
        if len(self._events) >= EVENT_BATCH:
            self.flush_events()

    def flush_events(self) -> None:
        if self._events:
            rows, self._events = self._events, []
            self.store.add_events(rows)

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------ resume

    def resume(self) -> None:
        """Reconcile the store and the workspace after any stop, clean or not (invariant 3)."""
        run = self.store.get_run(self.run_id)
        assert run is not None
        self._elapsed_before = run["elapsed"] or 0.0
        for row in self.store.in_flight(self.run_id):
            self.store.finish_experiment(
                row["id"], verdict=INTERRUPTED,
                reason="the engine stopped before this experiment finished")
        self.workspace.check_clean()
        branch = self.workspace.prepare_branch()
        self.store.update_run(self.run_id, branch=branch, status="running",
                              started=run["started"] or time.time())
        if run["best_experiment"]:
            best = self.store.experiment(run["best_experiment"])
            self.best_id = best["id"]
            self.best_files = self.store.version_files(best["id"])
            self.best_evals = [self._stored_evaluation(best)]
            # Finish an advance that a kill interrupted: files, then the commit.
            self.workspace.write_best(self.best_files)
            if self.workspace.is_git and f"Experiment: {best['id']}" not in self.workspace.head_message():
                sha = self.workspace.commit(self._commit_message(best), f"Experiment: {best['id']}")
                if sha:
                    self.store.set_commit(best["id"], sha)

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
            if self.best_id is None:
                await self._baseline()
            wave = 0
            while True:
                while self.paused and not self.stopping:
                    self._wake.clear()
                    await self._wake.wait()
                reason = self.check_stop()
                if reason:
                    self.stop_reason = reason
                    break
                wave += 1
                self._wave_task = asyncio.create_task(self._wave(wave))
                try:
                    await self._wave_task
                except asyncio.CancelledError:
                    if not self.stopping:
                        raise
                    self.stop_reason = "stopped"
                    break
        except BaselineFailed:
            self.failed = True
            raise
        finally:
            self.flush_events()
            await self.pool.close()
            elapsed = self._elapsed_before + time.monotonic() - self._started
            status = ("failed" if self.failed else
                      "stopped" if self.stopping and self.stop_reason in (None, "stopped") else "done")
            self.store.update_run(self.run_id, status=status, stop_reason=self.stop_reason or "stopped",
                                  finished=time.time(), elapsed=elapsed, engine_pid=None)
            self.notify()
        return self.stop_reason or "stopped"

    async def _baseline(self) -> None:
        files = self.workspace.read_targets()
        exp_id = self.store.start_experiment(self.run_id, round=0, kind=BASELINE, parent=None,
                                             description="baseline", files=files)
        self.log("evaluating the baseline", exp_id=exp_id)
        evaluation, worker = await self._score(exp_id, files, self.policy.repeats)
        if evaluation[0].status != "ok":
            err = evaluation[0].error
            self.store.finish_experiment(exp_id, verdict=evaluation[0].status, reason=err,
                                         error=err, log_tail=evaluation[0].log_tail, worker=worker)
            self.stop_reason = f"baseline failed: {err}"
            raise BaselineFailed(self.stop_reason)
        score = aggregate(evaluation, self.spec.decide.aggregate)
        first = evaluation[0]
        self.store.finish_experiment(
            exp_id, verdict=BASELINE, reason="starting point", score=score, metrics=first.metrics,
            items=first.items, usage=_usage(evaluation), log_tail=first.log_tail, worker=worker,
            best_files=files,
            run_update={"best_experiment": exp_id, "best_score": score, "baseline_score": score})
        self.best_id, self.best_files, self.best_evals = exp_id, files, evaluation
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
        proposal = self._proposal()
        try:
            mutation = await self.mutator.propose(proposal)
            self.workspace.confine(mutation.files)
            if all(self.best_files.get(p) == c for p, c in mutation.files.items()):
                raise MutationError("the mutation changes nothing")
        except (MutationError, PathRefused) as exc:
            usage = getattr(exc, "usage", None) or Usage()
            desc = getattr(exc, "description", "") or "invalid mutation"
            exp_id = self.store.start_experiment(self.run_id, round=round_no, kind="candidate",
                                                 parent=parent, description=desc, wave=wave)
            self.store.finish_experiment(exp_id, verdict=INVALID, reason=str(exc), error=str(exc),
                                         usage=usage, run_update=self._run_totals(usage))
            self.log(f"round {round_no}: invalid mutation: {exc}", level="warning", exp_id=exp_id)
            self.notify()
            return None
        diff = unified_diff(self.best_files, {**self.best_files, **mutation.files})
        exp_id = self.store.start_experiment(
            self.run_id, round=round_no, kind="candidate", parent=parent,
            description=mutation.description, rationale=mutation.rationale, diff=diff,
            wave=wave, files=mutation.files)
        cand = Candidate(exp_id, mutation, parent)
        self.in_flight[exp_id] = cand
        self.notify()
        return cand

    def _proposal(self) -> Proposal:
        changelog = self.store.experiments(self.run_id, newest_first=True, limit=CHANGELOG_WINDOW)
        changelog.reverse()
        failing = [r for r in self.store.item_results(self.best_id) if r["passed"] != 1] \
            if self.best_id else []
        guidance = [c["argument"] for c in reversed(self.store.commands(self.run_id, limit=20))
                    if c["verb"] == "guide" and c["applied"] and c["argument"]]
        return Proposal(self.spec.name, dict(self.best_files), changelog, failing, guidance,
                        aggregate(self.best_evals))

    async def _evaluate(self, cand: Candidate) -> None:
        files = {**self.best_files, **cand.mutation.files}
        evals, cand.worker = await self._score(cand.exp_id, files, self.policy.repeats)
        cand.evals = evals

    async def _score(self, exp_id: int, files: dict[str, str], repeats: int,
                     tier: Tier | None = None) -> tuple[list[Evaluation], str]:
        """Stage a copy with these files and evaluate it `repeats` times on one worker slot
        of the tier's group (the full tier by default); a failing worker hands it on."""
        folder = await asyncio.to_thread(self.workspace.stage, files)
        try:
            return await self.waves.score(exp_id, folder, repeats, tier)
        finally:
            await asyncio.to_thread(self.workspace.discard, folder)

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
                else:
                    decision = self.policy.decide(cand.evals, self.best_evals, self.direction)
                    cand.verdict, cand.reason = decision.verdict, decision.reason
                    gain = decision.details.get("gain", 0.0)
                    if decision.verdict == KEPT and (winner is None or gain > best_gain):
                        winner, best_gain = cand, gain
            for cand in candidates:
                if cand.verdict == KEPT and cand is not winner:
                    cand.verdict, cand.reason = REVERTED, f"#{winner.exp_id} did better in this wave"
            best_score = aggregate(self.best_evals)
            for cand in candidates:
                self._record(cand, best_score, cand is winner)
            if winner is not None:
                await self._advance(winner)
        for cand in candidates:
            self.mutator.feedback(cand.mutation, cand.verdict or CRASHED)
        self.notify()

    def _record(self, cand: Candidate, best_score: float | None, won: bool) -> None:
        evals = cand.evals or [Evaluation(CRASHED)]
        first = evals[0]
        score = aggregate(evals) if first.status == "ok" else None
        delta = None if score is None or best_score is None else score - best_score
        usage = _usage(evals)
        usage.add(cand.mutation.usage)
        run_update = self._run_totals(usage)
        best_files = None
        if won:
            best_files = {**self.best_files, **cand.mutation.files}
            run_update.update(best_experiment=cand.exp_id, best_score=score)
        self.store.finish_experiment(
            cand.exp_id, verdict=cand.verdict or CRASHED, reason=cand.reason, score=score,
            delta=delta, metrics=first.metrics, items=first.items, usage=usage,
            error=first.error, log_tail=first.log_tail, worker=cand.worker,
            best_files=best_files, run_update=run_update)
        self.flush_events()
        shown = "-" if score is None else f"{score:.4g}"
        self.log(f"#{cand.exp_id} {cand.verdict}: {cand.mutation.description} "
                 f"(score {shown}; {cand.reason})", exp_id=cand.exp_id)

    def _run_totals(self, usage: Usage) -> dict[str, Any]:
        run = self.store.get_run(self.run_id)
        return {"rounds": self.store.last_round(self.run_id),
                "cost_usd": (run["cost_usd"] or 0) + usage.cost_usd,
                "heartbeat": time.time(),
                "elapsed": self._elapsed_before + time.monotonic() - self._started}

    async def _advance(self, cand: Candidate) -> None:
        """Make the kept candidate the best: files on disk, then a commit on the run's branch."""
        self.best_files = {**self.best_files, **cand.mutation.files}
        self.best_evals = cand.evals
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

    def check_stop(self) -> str | None:
        if self.stopping:
            return "stopped"
        stop = self.spec.stop
        rows = self.store.experiments(self.run_id, newest_first=True,
                                      limit=max(stop.streak, stop.plateau or 0,
                                                stop.max_failures or 0, 1))
        scored = [r for r in rows if r["score"] is not None and r["tier"] != "screen"]
        if self.target is not None and len(scored) >= stop.streak:
            streak = scored[: stop.streak]
            if all(improvement(r["score"], self.target, self.direction) >= 0 for r in streak):
                return f"target {self.target:g} reached {stop.streak} times in a row"
        run = self.store.get_run(self.run_id)
        if stop.max_rounds is not None and run["rounds"] >= stop.max_rounds:
            return f"max rounds ({stop.max_rounds}) reached"
        elapsed = self._elapsed_before + time.monotonic() - self._started
        if stop.max_minutes is not None and elapsed >= stop.max_minutes * 60:
            return f"max time ({stop.max_minutes:g} min) reached"
        if stop.max_cost_usd is not None and (run["cost_usd"] or 0) >= stop.max_cost_usd:
            return f"max cost (${stop.max_cost_usd:g}) reached"
        candidates = [r for r in rows if r["kind"] == "candidate"]
        if stop.plateau is not None and len(candidates) >= stop.plateau and not any(
                r["verdict"] in ADVANCING for r in candidates[: stop.plateau]):
            return f"plateau: {stop.plateau} rounds without a keep"
        if stop.max_failures is not None and len(candidates) >= stop.max_failures and all(
                r["verdict"] in FAILURES for r in candidates[: stop.max_failures]):
            return f"{stop.max_failures} failures in a row"
        return None

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
            row = self.store.experiment(exp_id)
            if row is None or row["run_id"] != self.run_id:
                return f"#{exp_id}: no such experiment in this run"
            if row["verdict"] == BASELINE:
                return "the baseline cannot be vetoed"
            if row["verdict"] == PINNED:
                return f"#{exp_id} is pinned"
            if row["verdict"] != KEPT:
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
            row = self.store.experiment(exp_id)
            if row is None or row["run_id"] != self.run_id:
                return f"#{exp_id}: no such experiment in this run"
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
                                         __import__("json").loads(row["metrics_json"]),
                                         items=self._stored_evaluation(row).items,
                                         duration=row["duration"], best_files=files)
            await self._make_best(self.store.experiment(exp_id), f"pin #{exp_id}: {row['description']}")
            return f"#{exp_id} pinned and made the best version"

    async def _make_best(self, row: dict[str, Any], message: str) -> None:
        self.best_id = row["id"]
        self.best_files = self.store.version_files(row["id"])
        self.best_evals = [self._stored_evaluation(row)]
        self.store.update_run(self.run_id, best_experiment=row["id"], best_score=row["score"])
        await self._write_and_commit(row["id"], message)
        self.log(message)
        self.notify()


class BaselineFailed(Exception):
    """The baseline could not be scored: the run cannot climb from it."""


def _usage(evals: list[Evaluation]) -> Usage:
    total = Usage()
    for e in evals:
        total.add(e.usage)
    return total
