"""Veto and pin: a person overrules a verdict.

    veto  an experiment in flight → `vetoed` when it lands; a reverted one → banned (the
          changelog shows the mutator it was vetoed); a kept one → it and every keep built on
          it are vetoed, and the best version goes back to the last one before it.
    pin   keep an experiment whatever its score (a reverted one becomes the best version),
          and protect it from later vetoes (and from being pruned from the frontier).

Both work on any version of the tree: a vetoed frontier member beside the best, and what
was built on it, leave the frontier; a vetoed best hands over to the best version left (or
to the nearest one it was built on).

Both hold the best version's lock, so no wave is decided halfway through one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from engine.context import RunContext
from engine.model import BASELINE, KEPT, PINNED, VETOED
from engine.tree import rank
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
            if row["verdict"] != KEPT or row["kind"] == "imported":  # (no files: only banned)
                ctx.store.set_verdict(exp_id, VETOED, "vetoed: banned from later proposals")
                return f"#{exp_id} banned"
            chain = {r["id"]: r for r in ctx.store.advancing_chain(ctx.run_id)}
            later = _descendants(exp_id, chain)
            if any(r["verdict"] == PINNED for r in later):
                return f"#{exp_id} has a pinned experiment built on it"
            for r in [row, *later]:
                ctx.store.set_verdict(r["id"], VETOED, "vetoed" if r is row
                                      else f"built on vetoed #{exp_id}")
            gone = {exp_id, *(r["id"] for r in later)}
            versions = self.versions
            built = f" and {len(later)} built on it" if later else ""
            if versions.best_id not in gone:  # a frontier member beside the best
                versions.drop_refs(versions.drop(gone))
                return f"vetoed #{exp_id}{built}: out of the frontier"
            versions.drop_refs(versions.drop(gone))
            survivors = sorted(versions.members(), key=lambda v: rank(v, versions.direction))
            if survivors:
                new_best = ctx.store.experiment(survivors[-1].exp_id)
            else:  # the best it replaced (engine/waves.py: a sibling), or the nearest
                # version it was built on, that still stands
                parent = json.loads(row["decision_json"] or "{}").get("against", row["parent"])
                while parent in gone or (parent is not None and parent not in chain):
                    parent = (ctx.store.experiment(parent) or {}).get("parent")
                new_best = chain[parent] if parent is not None else None
            assert new_best is not None  # the baseline always stands
            await self._make_best(new_best, f"veto #{exp_id}: {row['description']}")
            return f"reverted #{exp_id}{built}"

    async def pin(self, exp_id: int) -> str:
        """Keep an experiment whatever its score and protect it from later reverts."""
        ctx = self.ctx
        async with self.lock:
            row = self._row(exp_id)
            if row is None:
                return f"#{exp_id}: no such experiment in this run"
            if row["kind"] == "imported":
                return f"#{exp_id} was imported: its files are not in the store"
            if row["verdict"] in (KEPT, BASELINE, PINNED):
                ctx.store.set_verdict(exp_id, PINNED, "pinned")
                self.versions.pinned.add(exp_id)
                if self.versions.width > 1 and self.versions.get(exp_id) is None:
                    await self.versions.keep(self.versions.load(ctx.store.experiment(exp_id)),
                                             f"pin #{exp_id}: {row['description']}")
                    return f"#{exp_id} pinned and back in the frontier"
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
            self.versions.pinned.add(exp_id)
            await self._make_best(ctx.store.experiment(exp_id),
                                  f"pin #{exp_id}: {row['description']}")
            return f"#{exp_id} pinned and made the best version"

    async def _make_best(self, row: dict[str, Any], message: str) -> None:
        ctx = self.ctx
        ctx.store.update_run(ctx.run_id, best_experiment=row["id"], best_score=row["score"])
        await self.versions.advance(self.versions.load(row), message)
        ctx.log(message)
        ctx.notify()


def _descendants(exp_id: int, chain: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The kept and pinned versions built on `exp_id` (children, their children...)."""
    children: dict[int, list[dict[str, Any]]] = {}
    for row in chain.values():
        if row["parent"] is not None:
            children.setdefault(row["parent"], []).append(row)
    out, todo = [], [exp_id]
    while todo:
        for row in children.get(todo.pop(), []):
            out.append(row)
            todo.append(row["id"])
    return sorted(out, key=lambda r: r["id"])
