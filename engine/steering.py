"""Veto and pin: a person overrules a verdict.

    veto  an experiment in flight → `vetoed` when it lands; a reverted one → banned (the
          changelog shows the mutator it was vetoed); a kept one → it and every keep built on
          it are vetoed, and the best version goes back to the last one before it.
    pin   keep an experiment whatever its score (a reverted one becomes the best version),
          and protect it from later vetoes.

Both hold the best version's lock, so no wave is decided halfway through one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from engine.context import RunContext
from engine.model import BASELINE, KEPT, PINNED, VETOED
from engine.versions import Versions, stored_evaluation


class Steering:
    """Applies a run's veto and pin commands."""

    def __init__(self, ctx: RunContext, versions: Versions, lock: asyncio.Lock,
                 forget_changelog: Callable[[], None]) -> None:
        self.ctx = ctx
        self.versions = versions
        self.lock = lock
        self._forget_changelog = forget_changelog

    def _row(self, exp_id: int) -> dict[str, Any] | None:
        self.ctx.ledger.records.write()
        self._forget_changelog()
        row = self.ctx.store.experiment(exp_id)
        return row if row is not None and row["run_id"] == self.ctx.run_id else None

    async def veto(self, exp_id: int | None) -> str:
        """Veto the experiment in flight, or revert a kept one and what was built on it."""
        ctx = self.ctx
        if exp_id is None or exp_id in ctx.in_flight:
            targets = [exp_id] if exp_id is not None else list(ctx.in_flight)
            if not targets:
                return "nothing in flight to veto"
            ctx.controls.vetoed.update(targets)
            return f"vetoed in flight: {', '.join(f'#{t}' for t in targets)}"
        async with self.lock:
            row = self._row(exp_id)
            if row is None:
                return f"#{exp_id}: no such experiment in this run"
            if row["verdict"] == BASELINE:
                return "the baseline cannot be vetoed"
            if row["verdict"] == PINNED:
                return f"#{exp_id} is pinned"
            if row["verdict"] != KEPT:
                ctx.store.set_verdict(exp_id, VETOED, "vetoed: banned from later proposals")
                return f"#{exp_id} banned"
            chain = ctx.store.advancing_chain(ctx.run_id)
            later = [r for r in chain if r["id"] > exp_id]
            if any(r["verdict"] == PINNED for r in later):
                return f"#{exp_id} has a pinned experiment built on it"
            before = [r for r in chain if r["id"] < exp_id]
            for r in [row, *later]:
                ctx.store.set_verdict(r["id"], VETOED, "vetoed" if r is row
                                      else f"built on vetoed #{exp_id}")
            await self._make_best(before[-1], f"veto #{exp_id}: {row['description']}")
            return f"reverted #{exp_id}" + (f" and {len(later)} built on it" if later else "")

    async def pin(self, exp_id: int) -> str:
        """Keep an experiment whatever its score and protect it from later reverts."""
        ctx = self.ctx
        async with self.lock:
            row = self._row(exp_id)
            if row is None:
                return f"#{exp_id}: no such experiment in this run"
            if row["verdict"] in (KEPT, BASELINE, PINNED):
                ctx.store.set_verdict(exp_id, PINNED, "pinned")
                return f"#{exp_id} pinned"
            if row["score"] is None or row["parent"] is None:
                return f"#{exp_id} has no score to keep"
            files = {**ctx.store.version_files(row["parent"]), **ctx.store.version_files(exp_id)}
            files = {p: files[p] for p in ctx.spec.target.files if p in files}
            ctx.store.finish_experiment(exp_id, verdict=PINNED, reason="pinned by hand",
                                        score=row["score"], delta=row["delta"],
                                        metrics=None if not row["metrics_json"] else
                                        json.loads(row["metrics_json"]),
                                        items=stored_evaluation(ctx.store, row).items,
                                        duration=row["duration"], best_files=files)
            await self._make_best(ctx.store.experiment(exp_id),
                                  f"pin #{exp_id}: {row['description']}")
            return f"#{exp_id} pinned and made the best version"

    async def _make_best(self, row: dict[str, Any], message: str) -> None:
        ctx = self.ctx
        self.versions.set_best(self.versions.load(row))
        ctx.store.update_run(ctx.run_id, best_experiment=row["id"], best_score=row["score"])
        await self.versions.write_and_commit(message)
        ctx.log(message)
        ctx.notify()
