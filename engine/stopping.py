"""Stops that stop: a stop (the app, the CLI, SIGTERM, Ctrl-C) cancels the model calls in
flight — a mutator's proposal as well as an evaluation — and the experiment they belonged to
is recorded `interrupted`, with whatever its calls had already cost (engine/spend.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.model import INTERRUPTED, Mutation
from engine.spend import claim, metered

if TYPE_CHECKING:
    from engine.loop import RunLoop


def interrupted(loop: RunLoop, exp_id: int, reason: str) -> None:
    """Record an experiment a stop cut short, with what its calls already cost."""
    spent = claim(loop, exp_id)
    loop.store.finish_experiment(exp_id, verdict=INTERRUPTED, reason=reason, usage=spent,
                                 run_update=loop._run_totals(spent))


async def cancellable_proposal(loop: RunLoop, round_no: int, parent: int, wave: int) -> Mutation:
    """The mutator's proposal, which a stop may cancel (`cancel_wave` cancels while the loop
    is `_evaluating`); a cancelled one is recorded as an interrupted experiment."""
    was = loop._evaluating
    loop._evaluating = True
    key = -round_no  # (no experiment id yet)
    try:
        with metered(loop, key):
            return await loop.mutator.propose(loop._proposal())
    except asyncio.CancelledError:
        if loop.stopping:
            loop.records.write()
            exp_id = loop.store.start_experiment(
                loop.run_id, round=round_no, kind="candidate", parent=parent, wave=wave,
                description="(the mutator was proposing)")
            spent = claim(loop, key)
            loop.store.finish_experiment(exp_id, verdict=INTERRUPTED,
                                         reason="stopped while the mutator was proposing",
                                         usage=spent, run_update=loop._run_totals(spent))
            loop.notify()
        raise
    finally:
        loop._evaluating = was
