"""The hill-climbing loop for one run, top to bottom:

    resume → baseline → repeat: pick parents → propose → stage → score → decide → record
                                → apply → stop?

`RunLoop.run` and `RunLoop._round` are the whole story; each step is a collaborator with a
small interface, built here and handed what it needs (docs/ARCHITECTURE.md):

    search      which versions the next candidates are proposed from (engine/search.py)
    waves       propose → stage → score, keeping the worker slots full; each candidate is
                decided as it lands (engine/waves.py, engine/proposer.py, engine/scoring.py)
    settler     decide each candidate against its parent, record it (engine/settle.py)
    versions    the best version and the frontier, their files and git (engine/versions.py)
    ledger      every write to the store: outcomes, events, counters (engine/ledger.py)
    stops       the stop rules (engine/stoprules.py); steering: veto, pin (engine/steering.py)

Every experiment is written to the store before anything is reverted or advanced (log
before reset), and the target files on disk only ever hold the best version.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from engine import calls
from engine import spec as specs
from engine.context import Candidate, RunContext, usage_of
from engine.decide import aggregate, build_policy
from engine.evaluators import build_evaluator
from engine.holdout import HeldOut
from engine.labels import prime_judges
from engine.ledger import Ledger
from engine.library import workspace_for
from engine.llm import run_prices
from engine.model import BASELINE
from engine.mutators import build_mutator
from engine.playbook import read_playbooks
from engine.proposer import Proposer
from engine.reeval import Reevaluator
from engine.retests import Retests
from engine.scoring import Scorer
from engine.search import build_search
from engine.settle import Settler
from engine.steering import Steering
from engine.stopping import interrupted
from engine.stoprules import StopRules
from engine.storage import StorageGuard, storage_trouble
from engine.store import Store
from engine.stream import ProposalStream
from engine.versions import Versions
from engine.waves import WaveRunner
from engine.workers.pool import WorkerPool, build_workers
from engine.workers.tiers import build_tiers, screen_spec
from engine.workspace import SlotFolders

__all__ = ["BaselineFailed", "Candidate", "RunLoop", "storage_trouble"]


class BaselineFailed(Exception):
    """The baseline could not be scored: the run cannot climb from it."""


class RunLoop:
    """Runs one spec's hill-climbing loop against the store."""

    def __init__(self, spec: specs.Spec, store: Store, run_id: int,
                 notify: Callable[[], None] = lambda: None) -> None:
        self.spec, self.store, self.run_id = spec, store, run_id
        self.workspace = workspace_for(spec)  # a library run: its branch, never checked out
        self.ledger = Ledger(store, run_id)
        self.ctx = ctx = RunContext(spec, store, run_id, self.workspace, self.ledger, notify)
        self.policy = build_policy(spec.decide)
        self.mutator = build_mutator(spec, read_playbooks(spec, store), store.experiment)
        if hasattr(self.mutator, "bind_store"):  # what it tried before a restart (params)
            self.mutator.bind_store(store, run_id)
        self.versions = Versions(store, self.workspace, spec.decide.aggregate, spec.direction, ctx=ctx)
        ctx.best = lambda: self.versions.best_id
        self.search = build_search(spec, self.versions)
        self.pool = WorkerPool(build_workers(spec.name, spec.workers))
        self.slot_folders = SlotFolders(self.workspace, spec.name)
        self.best_lock = asyncio.Lock()  # held while a round is decided, a veto or a pin
        self.proposer = Proposer(ctx, self.mutator, self.versions)
        self.scorer = Scorer(ctx, self.pool, self.slot_folders, self.proposer.think_ahead)
        cheap = screen_spec(spec)
        self.evaluator = build_evaluator(spec)
        tiers = build_tiers(spec, self.evaluator, build_evaluator(cheap) if cheap else None)
        self.retests = Retests(ctx, spec.decide.retest, self.proposer.forget_changelog)
        # Mutators that read the history (a model, an agent) take time: propose ahead for
        # them; cheap ones (the params mutator) propose when a slot is free, or ahead exactly.
        slow = getattr(self.mutator, "reads_history", True)
        ahead = spec.ahead if spec.ahead is not None else spec.parallel if slow else 0
        self.stream = ProposalStream(ctx, self.proposer, self.search, self.versions,
                                     self.retests, ahead)
        self.waves = WaveRunner(ctx, self.stream, self.scorer, self.versions, self.policy,
                                self.mutator, tiers)
        self.reevals = Reevaluator(ctx, self.scorer, self.versions, self.policy, tiers[1],
                                   self.best_lock)
        self.settler = Settler(ctx, self.versions, self.policy)
        self.steering = Steering(ctx, self.versions, self.best_lock,
                                 self.proposer.forget_changelog)
        self.stops = StopRules(ctx)
        #: Pauses the run when a write fails on any path (engine/storage.py).
        ctx.flush_workers = self.scorer.flush_workers
        self.storage = StorageGuard(ctx)
        self.ledger.records.on_trouble = self.storage.trip
        self.ledger.trouble = self.storage.trip
        self.scorer.quietly = self.storage.quietly
        self.holdout = HeldOut(ctx, self.scorer, self.versions, self.policy, self.waves.full)
        # the judges get the labelled examples; items the labels disagree with are an alert
        ctx.alert = prime_judges(spec, store, [t.evaluator for t in (*tiers, self.holdout.tier)
                                               if t is not None])
        # Thinking ahead (engine/ahead.py) is for one candidate a wave, nothing before it.
        alone = (spec.parallel == 1 and tiers[0] is None and not spec.decide.reeval_every
                 and spec.search.strategy == "greedy")
        self.proposer.may_think_ahead = lambda cand: alone and not len(self.retests)
        self.stop_reason: str | None = None
        self.failed = False
        self._wake = asyncio.Event()
        ctx.wake = self.wake
        self._wave_no = 0
        self._wave_task: asyncio.Task[str] | None = None

    # ------------------------------------------------------------ the loop

    async def run(self) -> str:
        """Run until a stop rule or a stop command; returns the stop reason."""
        calls.bind(calls.Journal(self.store, self.run_id, self.storage.trip))
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
        """Baseline, then rounds, until a stop rule applies; returns its reason. What is
        in flight is decided first: a pause or a stop rule only stops new candidates."""
        while True:
            while self.paused and not self.stopping and not self.waves.busy:
                self.storage.quietly(self.ledger.records.write)
                self._wake.clear()
                await self._wake.wait()
            if not self.waves.busy:
                await self.storage.wait()  # a write failed somewhere: paused until writes work
                await self.ctx.turn()  # a library's scheduler: whose round is next
            reason = self.check_stop()
            if reason and not self.waves.busy:
                if not self.stopping:  # the best on the held-out part, at the end
                    await self.holdout.final()
                return self.holdout.stop_reason or reason
            if self.versions.best is None:  # (after a hand edit, what is in flight is stale)
                await self.waves.close(reason="a hand edit replaced the version it was built on")
                await self._baseline()
            else:
                self._wave_no += 1
                await self._round(self._wave_no, fill=reason is None)
            await self.holdout.due()  # at the baseline, after every K keeps

    async def _round(self, wave: int, fill: bool = True) -> None:
        """One round: pick parents → propose → stage → score → decide → record → apply;
        the free slots get new candidates (not when `fill` is false), the ones that land are
        decided while the others keep running."""
        while fill and await self.reevals.maybe(wave):  # (again while confirming a target)
            if self.check_stop():
                return
        # pick parents → propose → stage → score: each candidate comes from the proposal
        # stream (a parent the search picks; proposed ahead while the slots were busy)
        candidates = await self.waves.run(
            wave, self.spec.parallel,
            lambda: "storage" if self.storage.down else self.check_stop(mid_wave=True), fill)
        async with self.best_lock:  # (each against the best as it is now: waves.py)
            outcome = self.settler.decide(self.waves.against_best(candidates))
            self.retests.offer(candidates, outcome.best)
            self.settler.record(candidates, outcome)
            if outcome.kept:
                await self.storage.committed()  # their records first (waits on a full disk)
            for cand in outcome.kept:
                version = self.versions.make(cand.exp_id, cand.files,
                                             self.policy.incumbent(cand.evals), cand.parent)
                if cand is outcome.best:
                    await self.versions.advance(version, cand.mutation.description)
                else:
                    await self.versions.keep(version, cand.mutation.description)
        self.proposer.feedback(candidates, retests_waiting=len(self.retests) > 0)
        self.holdout.note_round(outcome.best is not None)
        self.ctx.notify()

    async def _baseline(self) -> None:
        store, ledger = self.store, self.ledger
        files = self.workspace.read_targets()
        exp_id = store.start_experiment(self.run_id, round=0, kind=BASELINE, parent=None, files=files,
                                        description=self.ctx.baseline_note or "baseline")
        self.log("evaluating the baseline", exp_id=exp_id)
        try:  # (a stop cancels it, model calls included)
            evaluation, worker = await self.scorer.score(
                exp_id, files, self.policy.baseline_repeats, self.waves.full)
        except asyncio.CancelledError:
            interrupted(self.ctx, exp_id, "stopped before the baseline was scored")
            raise
        first = evaluation[0]
        usage = usage_of(evaluation)
        if first.status != "ok":
            store.finish_experiment(exp_id, verdict=first.status, reason=first.error,
                                    error=first.error, log_tail=first.log_tail, worker=worker,
                                    items=first.items, usage=usage,
                                    run_update=ledger.totals(usage))
            if self.paused:  # model trouble paused the run (engine/outage.py): not a failure
                return
            self.stop_reason = f"baseline failed: {first.error}"
            raise BaselineFailed(self.stop_reason)
        score = aggregate(evaluation, self.spec.decide.aggregate)
        noise = self.policy.measure_noise(evaluation)
        store.finish_experiment(
            exp_id, verdict=BASELINE, reason="starting point", score=score, metrics=first.metrics,
            items=first.items, usage=usage, log_tail=first.log_tail, worker=worker,
            best_files=files,
            run_update={**ledger.totals(usage), "best_experiment": exp_id, "best_score": score,
                        "baseline_score": score, "noise_json": noise.to_json()})
        store.set_decision(exp_id, {"scores": noise.scores, "repeats": noise.repeats})
        self.log(noise.describe(), exp_id=exp_id)
        self.versions.set_best(self.versions.make(
            exp_id, files, [e for e in evaluation if e.status == "ok"], None))
        # The recorded version, as keeps do: the evaluation may have changed the targets.
        self.workspace.write_best(files)
        sha = self.workspace.commit(f"autoresearch {self.spec.name}: baseline",
                                    f"Experiment: {exp_id}")
        if sha:
            store.set_commit(exp_id, sha)
        ledger.log(f"baseline score {score:.4g}", exp_id=exp_id)
        self.ctx.notify()

    # ------------------------------------------------------------ resume, finish, storage

    def resume(self) -> None:
        """Reconcile the store and the workspace after any stop, clean or not (invariant 3)."""
        store = self.store
        run = store.get_run(self.run_id)
        assert run is not None
        self.ledger.resume(run)  # (in-flight rows: interrupted, with what their calls cost)
        calls.recover(store, self.run_id, self.ledger.totals, store.in_flight(self.run_id),
                      "the engine stopped before this experiment finished")
        self.ctx.in_flight.clear()
        best = store.experiment(run["best_experiment"]) if run["best_experiment"] else None
        self.workspace.clear_stale_git_locks()
        # Target files holding the best version are an advance a kill interrupted, not the
        # user's edits: only other uncommitted changes are refused.
        self.workspace.check_clean(allowed=store.version_files(best["id"]) if best else {})
        branch = self.workspace.prepare_branch()
        store.update_run(self.run_id, branch=branch, status="running",
                         started=run["started"] or time.time())
        prices = run_prices(self.spec)
        if prices:  # the price table this run's costs are computed with
            store.update_run(self.run_id, prices_json=json.dumps(prices))
        self.versions.reset()
        if best is not None:
            self.versions.set_best(self.versions.load(best))
            self.versions.finish_advance(best, f"autoresearch {self.spec.name}: baseline"
                                         if best["kind"] == BASELINE else
                                         best["description"] or f"experiment {best['id']}")
        self.search.resume(self.run_id)
        self.policy.restore_noise(run["noise_json"])
        self.retests.resume()
        self.holdout.resume()

    async def _finish(self) -> None:
        try:
            await self.waves.close()  # evaluations still in flight: interrupted
            await self.stream.close()  # proposals made ahead and never used are recorded
        except (sqlite3.Error, OSError) as exc:
            if not storage_trouble(exc):
                raise
        await self.pool.close()
        self.slot_folders.discard()
        status = ("failed" if self.failed else
                  "stopped" if self.stopping and self.stop_reason in (None, "stopped") else "done")
        def record_stop() -> None:
            self.ledger.records.write()
            self.flush_events()
            self.store.update_run(self.run_id, status=status,
                                  stop_reason=self.stop_reason or "stopped",
                                  finished=time.time(), elapsed=self.ledger.elapsed(),
                                  engine_pid=None)

        try:
            self.storage.with_reserve(record_stop)  # a full disk still records the stop
        except (sqlite3.Error, OSError) as exc:
            if not storage_trouble(exc):
                raise
            self.alert = f"could not record the stop: {exc}"
        self.ctx.notify()

    async def _wait_for_storage(self, exc: BaseException) -> None:
        """The store or the disk refused a write on the loop's own path: pause, probe, and
        pick up where the store says we are once it writes again (nothing half-recorded is
        trusted)."""
        self.storage.trip(exc)
        await self.waves.close(record=False)  # (resume marks them interrupted)
        while not self.stopping:
            await self.storage.wait()
            if self.stopping:
                return
            try:
                self.resume()
                return
            except (sqlite3.Error, OSError) as again:
                if not storage_trouble(again):
                    raise
                self.storage.trip(again)

    mutator = property(lambda self: self._mutator)

    @mutator.setter
    def mutator(self, mutator: Any) -> None:
        """A mutator swapped in (a scripted one in tests) reaches every collaborator using it."""
        self._mutator = mutator
        parts = [self.__dict__.get("proposer"), self.__dict__.get("waves")]
        for part in [*parts, getattr(parts[0], "ahead", None)]:
            if part is not None:
                part.mutator = mutator

    # ------------------------------------------------------------ what the host uses

    def check_stop(self, *, mid_wave: bool = False) -> str | None:
        return (self.holdout.stop_reason or self.stops.check(mid_wave=mid_wave)
                or self.ctx.library_stop() or getattr(self.mutator, "finished", None))

    def cancel_wave(self) -> None:
        """Abandon the evaluations and model calls in flight (recorded as interrupted)."""
        # Only evaluations and model calls are abandoned: deciding and recording (under the
        # best's lock) always run to the end.
        self.waves.cancel()  # the slots' evaluations, each in a task of its own
        if self.ctx.cancellable and self._wave_task is not None and not self._wave_task.done() \
                and not self.best_lock.locked():
            self._wave_task.cancel()  # the loop's own: a proposal, an evaluation

    async def veto(self, exp_id: int | None) -> str:
        return await self.steering.veto(exp_id)

    async def pin(self, exp_id: int) -> str:
        return await self.steering.pin(exp_id)

    def pause_for_error(self, message: str) -> None:
        self.ctx.pause_for_error(message)

    def log(self, line: str, *, level: str = "info", source: str = "engine",
            exp_id: int | None = None) -> None:
        self.ledger.log(line, level=level, source=source, exp_id=exp_id)

    def flush_events(self) -> None:
        self.ledger.flush_events()

    def wake(self) -> None:
        self._wake.set()
        self.waves.resumed.set()  # (a paused run's free slots are filled at once)

    # The steering switches the host sets (engine/context.py's Controls).
    paused = property(lambda self: self.ctx.controls.paused,
                      lambda self, value: setattr(self.ctx.controls, "paused", value))
    stopping = property(lambda self: self.ctx.controls.stopping,
                        lambda self, value: setattr(self.ctx.controls, "stopping", value))

    @property
    def alert(self) -> str | None:
        """A problem a person must see (full disk...); None when all is well."""
        return self.ctx.alert

    @alert.setter
    def alert(self, value: str | None) -> None:
        self.ctx.alert = value

    @property
    def in_flight(self) -> dict[int, Candidate]:
        return self.ctx.in_flight

    @property
    def best_id(self) -> int | None:
        return self.versions.best_id
