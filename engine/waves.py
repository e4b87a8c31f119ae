"""The slots' work: candidates proposed, staged and scored over the worker pool, handed to the
loop to decide as each one lands.

    plain runs    the slots are kept full: a slot that finishes hands its candidate to the
                  loop, which decides it against the best as it is then (engine/settle.py),
                  and gets a new candidate at once while the others keep running — no wave
                  waits for its slowest candidate. Decisions come in the order candidates
                  land; each is a normal keep or revert. A candidate whose parent a keep
                  replaced while it was scored is decided against the new best, as that
                  keep's sibling (greedy search; beam and frontier keep the parent alive)
    library runs  the same, but the slots are refilled only once all have landed: a
                  library's scheduler gives its runs turns of one wave (engine/scheduler.py)
    tiered runs   a wave: propose K → screen each in the cheap tier, with the best version
                  screened once for reference → the screened-out are recorded → the top_k
                  that beat the reference go to the full tier → the loop decides those
                  (promotion ranks a wave's screen scores, so the wave is the unit there)

Scores are compared only within one tier and one worker group. A stop records every
candidate still being scored as interrupted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from engine.context import Candidate, RunContext, usage_of
from engine.decide import GreaterPolicy, aggregate, improvement
from engine.model import CRASHED, INTERRUPTED, RETEST, REVERTED, VETOED, Evaluation, Mutator
from engine.scoring import Scorer
from engine.spend import claim
from engine.stream import ProposalStream
from engine.versions import Version, Versions
from engine.workers.tiers import FULL, SCREEN, Tier

#: Experiment kind of the best version re-scored in the screen tier (the reference).
REFERENCE = "reference"


class WaveRunner:
    """Keeps the slots busy with candidates; hands the loop each one as it lands."""

    def __init__(self, ctx: RunContext, stream: ProposalStream, scorer: Scorer,
                 versions: Versions, policy: GreaterPolicy, mutator: Mutator,
                 tiers: tuple[Tier | None, Tier]) -> None:
        self.ctx = ctx
        self.stream = stream
        self.scorer = scorer
        self.versions = versions
        self.policy = policy
        self.mutator = mutator
        self.screen, self.full = tiers
        #: (best experiment id, its screen-tier score) once measured.
        self.reference: tuple[int, float | None] | None = None
        #: Candidates being scored, each in a task of its own (one a slot).
        self.running: dict[asyncio.Task[None], Candidate] = {}
        #: The one candidate scored in the loop's own task (one slot: nothing to overlap).
        self._inline: Candidate | None = None
        #: Set when a paused run resumes: its free slots are filled without waiting for the
        #: next candidate to land.
        self.resumed = asyncio.Event()
        #: A slot was left free in the last fill: no proposal made ahead was ready.
        self._short = False

    @property
    def busy(self) -> bool:
        """Candidates are being scored: the loop decides them before it pauses or stops."""
        return bool(self.running)

    async def run(self, wave: int, n: int, stop_now: Callable[[], str | None],
                  fill: bool = True) -> list[Candidate]:
        """Start candidates until `n` are being scored (unless `fill` is false: a stop rule
        applies, and what is in flight is drained), then wait for the next to land; returns
        the candidates the loop decides now (the finalists of a wave, in a tiered run)."""
        if self.screen is not None:
            return await self._tiered(wave, n, stop_now)
        self._short = False
        try:
            # (a library's run takes turns of a wave: it refills only once all have landed)
            if fill and not (self.running and self.ctx.in_library):
                cand = await self._fill(wave, n, stop_now)
                if cand is not None:
                    return [cand]
            return await self._landed()
        except asyncio.CancelledError:
            await self.close()
            raise

    async def _fill(self, wave: int, n: int, stop_now: Callable[[], str | None],
                    ) -> Candidate | None:
        """Start candidates on the free slots (at most `n` in flight). With one slot and
        nothing to overlap, the one candidate is scored right here and returned (a task, a
        yield and a wait per round add up when evaluations take milliseconds)."""
        ctx, stream = self.ctx, self.stream
        # (bounded: an invalid mutation or a model outage starts nothing)
        for k in range(n - len(self.running)):
            # (the loop has just checked the stop rules before the first)
            if ctx.controls.stopping or ctx.controls.paused or k and stop_now():
                break
            if n > 1:
                stream.prefetch()  # the free slots' proposals, made at once
            # While others run, a slot takes only a proposal that is ready: what lands
            # meanwhile is decided, and the slot is filled once one is (_landed).
            if self.running and not stream.ready():
                self._short = True
                break
            # From the stream: a retest, a proposal made ahead, or a fresh one from a
            # parent the search picks (engine/stream.py).
            cand = await stream.next(ctx.ledger.max_round + 1, wave, wait=not self.running)
            if cand is None:
                continue
            if not stop_now():
                stream.prefetch()  # the next ones, while this one is scored
            if n == 1:
                self._inline = cand
                await self.evaluate(cand)
                self._inline = None
                return cand
            self.running[asyncio.create_task(self.evaluate(cand))] = cand
            await asyncio.sleep(0)  # let it start while the next one is proposed
        return None

    async def _landed(self) -> list[Candidate]:
        """The candidates whose scoring has finished (at least one, when any runs)."""
        if not self.running:
            return []
        waits: set[asyncio.Future] = set(self.running)
        resumed = None
        if self.ctx.controls.paused:  # (a resume fills the free slots at once)
            self.resumed.clear()
            waits.add(resumed := asyncio.ensure_future(self.resumed.wait()))
        elif self._short:  # a free slot: filled once a proposal made ahead is ready
            waits.update(a.task for a in self.stream.waiting if not a.task.done())
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if resumed is not None:
            resumed.cancel()
        done &= self.running.keys()
        if any(task.cancelled() for task in done):  # a stop (cancel): all are interrupted
            raise asyncio.CancelledError
        landed = sorted((self.running.pop(task) for task in done), key=lambda c: c.exp_id)
        for task in done:
            task.result()  # (what went wrong in one: a write that failed...)
        return landed

    def cancel(self) -> None:
        """A stop: the evaluations in flight are cancelled (recorded by close())."""
        for task in self.running:
            task.cancel()

    async def close(self, record: bool = True,
                    reason: str = "stopped before the evaluation finished") -> None:
        """Cancel the evaluations still in flight and record them as interrupted (not when
        writes fail: resuming marks their rows interrupted)."""
        running, self.running = self.running, {}
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)  # remote jobs get killed
        stopped = [*running.values(), *([self._inline] if self._inline else [])]
        self._inline = None
        if stopped and record:
            self._interrupted(stopped, set(), reason)

    def against_best(self, candidates: list[Candidate]) -> list[Candidate]:
        """Greedy search: a candidate whose parent was replaced while it was scored (by a
        keep, a pin) is decided against the best as it is now, as a sibling of it (its row
        keeps the parent it was proposed from). One built on a vetoed version is not: it is
        reverted (engine/settle.py)."""
        best = self.versions.best
        if self.versions.width > 1 or best is None:
            return candidates
        for cand in candidates:
            if cand.parent == best.exp_id:
                continue
            row = self.ctx.store.experiment(cand.parent)
            if row is None or row["verdict"] == VETOED:
                continue
            self.ctx.log(f"#{cand.exp_id}: its parent #{cand.parent} was replaced by "
                         f"#{best.exp_id} while it was scored; decided against #{best.exp_id}",
                         exp_id=cand.exp_id)
            cand.details.update(proposed_from=cand.parent, against=best.exp_id)
            cand.parent = best.exp_id
        return candidates

    async def _tiered(self, wave: int, n: int, stop_now: Callable[[], str | None],
                      ) -> list[Candidate]:
        """Pick parents, propose, stage and screen one wave of `n` candidates; returns the
        finalists, scored in the full tier."""
        ctx = self.ctx
        round_no = ctx.ledger.max_round
        best = self.versions.best
        assert best is not None
        candidates: list[Candidate] = []
        tasks: list[asyncio.Task[None]] = []
        recorded: set[int] = set()
        finalists: list[Candidate] = []
        try:
            if self.screen is not None and not self._have_reference(best.exp_id):
                tasks.append(asyncio.create_task(
                    self._screen_reference(best, round_no, wave)))
            if n > 1:
                self.stream.prefetch(n)  # this wave's proposals, made at once
            for k in range(n):
                if ctx.controls.stopping or k and (ctx.controls.paused or stop_now()):
                    break  # e.g. the cost in flight already reaches max_cost_usd
                # From the stream: a retest, a proposal made ahead, or a fresh one from a
                # parent the search picks (engine/stream.py).
                cand = await self.stream.next(round_no + k + 1, wave)
                if cand is None:
                    continue
                candidates.append(cand)
                if self.screen is not None:
                    ctx.store.set_tier(cand.exp_id, SCREEN)
                if k == n - 1 and not stop_now():
                    self.stream.prefetch(n)  # the next wave's, while this one is scored
                if n == 1 and not tasks:
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
                full = [asyncio.create_task(self.evaluate(c)) for c in finalists]
                tasks.extend(full)
                await asyncio.gather(*full)
                for cand in finalists:
                    if cand.evals:
                        cand.evals[0].metrics["screen_score"] = cand.screen_score
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # remote jobs get killed
            self._interrupted(candidates, recorded)
            raise
        return finalists

    def _interrupted(self, candidates: list[Candidate], recorded: set[int],
                     reason: str = "stopped before the evaluation finished") -> None:
        ctx = self.ctx
        ctx.ledger.records.write()
        for cand in candidates:
            if cand.exp_id not in recorded:
                ctx.in_flight.pop(cand.exp_id, None)
                spent = claim(ctx, cand.exp_id, cand.mutation.usage)  # engine/spend.py
                ctx.store.finish_experiment(
                    cand.exp_id, verdict=INTERRUPTED, reason=reason, usage=spent,
                    run_update=ctx.ledger.totals(spent))
        for row in ctx.store.in_flight(ctx.run_id):  # an unfinished reference
            spent = claim(ctx, row["id"])
            ctx.store.finish_experiment(row["id"], verdict=INTERRUPTED,
                                        reason="stopped before the evaluation finished",
                                        usage=spent, run_update=ctx.ledger.totals(spent))
        ctx.notify()

    async def evaluate(self, cand: Candidate) -> None:
        """Score a candidate in the full tier, compared as it goes with its parent."""
        parent = self.versions.get(cand.parent) or self.versions.best
        assert parent is not None
        direction = self.ctx.spec.direction
        started = time.monotonic()
        cand.evals, cand.worker = await self.scorer.score(
            cand.exp_id, cand.files, self.policy.max_repeats, self.full,
            more=lambda got: self.policy.keep_going(got, parent.evals, direction))
        self.stream.evaluated(time.monotonic() - started)  # (how many to propose ahead)

    async def _first_tier(self, cand: Candidate) -> None:
        if self.screen is None:
            await self.evaluate(cand)
            return
        cand.evals, cand.worker = await self.scorer.score(cand.exp_id, cand.files, 1,
                                                          self.screen)

    # ------------------------------------------------------------ screening

    def _have_reference(self, best_id: int) -> bool:
        if self.reference is not None and self.reference[0] == best_id:
            return True
        ctx = self.ctx
        for row in ctx.store.experiments(ctx.run_id, newest_first=True, limit=200):
            if row["kind"] == REFERENCE and row["parent"] == best_id and row["score"] is not None:
                self.reference = (best_id, row["score"])
                return True
        return False

    async def _screen_reference(self, best: Version, round_no: int, wave: int) -> None:
        """Score the best version in the screen tier: what screened candidates must beat."""
        ctx = self.ctx
        assert self.screen is not None
        ctx.ledger.records.write()
        exp_id = ctx.store.start_experiment(
            ctx.run_id, round=round_no, kind=REFERENCE, parent=best.exp_id, tier=SCREEN,
            wave=wave, description=f"best version (#{best.exp_id}) screened for reference")
        evals, worker = await self.scorer.score(exp_id, dict(best.files), 1, self.screen)
        first = evals[0]
        score = aggregate(evals, ctx.spec.decide.aggregate) if first.status == "ok" else None
        usage = usage_of(evals)
        ctx.store.finish_experiment(
            exp_id, verdict=RETEST if score is not None else first.status,
            reason="screen-tier score of the best version" if score is not None else first.error,
            score=score, metrics=first.metrics, items=first.items, usage=usage,
            error=first.error, log_tail=first.log_tail, worker=worker,
            run_update=ctx.ledger.totals(usage))
        self.reference = (best.exp_id, score)
        if score is None:
            ctx.log(f"the screen tier could not score the best version ({first.error}); "
                    "promoting by screen score alone", level="warning", exp_id=exp_id)

    def _promote(self, candidates: list[Candidate], recorded: set[int]) -> list[Candidate]:
        """Record the screened-out candidates; return the top_k that go to the full tier."""
        ctx = self.ctx
        direction = ctx.spec.direction
        best_id = self.versions.best_id
        ref = self.reference[1] if self.reference and self.reference[0] == best_id else None
        top_k = ctx.spec.promote.top_k if ctx.spec.promote else 1
        ranked: list[tuple[float, Candidate]] = []
        for cand in candidates:
            bad = next((e for e in cand.evals if e.status != "ok"), None)
            cand.screen_score = aggregate(cand.evals, ctx.spec.decide.aggregate)
            if cand.exp_id in ctx.controls.vetoed:
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
                ctx.store.set_tier(cand.exp_id, FULL)
                ctx.log(f"#{cand.exp_id} promoted to the full tier ({shown})",
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
        ctx = self.ctx
        evals = cand.evals or [Evaluation(CRASHED, error=reason)]
        first = evals[0]
        score = cand.screen_score if first.status == "ok" else None
        usage = usage_of(evals, cand.mutation.usage)
        ctx.in_flight.pop(cand.exp_id, None)
        cand.verdict, cand.reason = verdict, reason
        ctx.ledger.records.write()
        ctx.store.finish_experiment(
            cand.exp_id, verdict=verdict, reason=reason, score=score,
            delta=None if score is None or ref is None else round(score - ref, 12),
            metrics=first.metrics, items=first.items, usage=usage, error=first.error,
            log_tail=first.log_tail, worker=cand.worker, run_update=ctx.ledger.totals(usage))
        recorded.add(cand.exp_id)
        ctx.log(f"#{cand.exp_id} {verdict}: {cand.mutation.description} ({reason})",
                exp_id=cand.exp_id)
        self.mutator.feedback(cand.mutation, verdict)
