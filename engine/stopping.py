"""Stops that stop: a stop (the app, the CLI, SIGTERM, Ctrl-C) cancels the model calls in
flight — a mutator's proposal as well as an evaluation — and the experiment they belonged to
is recorded `interrupted`, with whatever its calls had already cost (engine/spend.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from engine.model import INTERRUPTED, Mutation
from engine.spend import claim, metered

if TYPE_CHECKING:
    from engine.context import RunContext


def interrupted(ctx: RunContext, exp_id: int, reason: str) -> None:
    """Record an experiment a stop cut short, with what its calls already cost."""
    spent = claim(ctx, exp_id)
    ctx.store.finish_experiment(exp_id, verdict=INTERRUPTED, reason=reason, usage=spent,
                                run_update=ctx.ledger.totals(spent))


async def cancellable_proposal(ctx: RunContext, propose: Callable[[], Awaitable[Mutation]],
                               round_no: int, parent: int, wave: int) -> Mutation:
    """The mutator's proposal, which a stop may cancel (`cancel_wave` cancels while something
    `cancellable` runs); a cancelled one is recorded as an interrupted experiment."""
    ctx.cancellable += 1
    key = -round_no  # (no experiment id yet)
    try:
        with metered(ctx, key):
            return await propose()
    except asyncio.CancelledError:
        if ctx.stopping:
            ctx.ledger.records.write()
            exp_id = ctx.store.start_experiment(
                ctx.run_id, round=round_no, kind="candidate", parent=parent, wave=wave,
                description="(the mutator was proposing)")
            spent = claim(ctx, key)
            ctx.store.finish_experiment(exp_id, verdict=INTERRUPTED,
                                        reason="stopped while the mutator was proposing",
                                        usage=spent, run_update=ctx.ledger.totals(spent))
            ctx.notify()
        raise
    finally:
        ctx.cancellable -= 1
