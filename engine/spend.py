"""Where the money of model calls goes: every reply's usage is charged to the meter of the
experiment being scored (a context variable, so the evaluator's concurrent calls, in tasks
of their own, charge the same meter).

The evaluators add up their own usage too; the meter is the backstop for what they cannot
report: the calls an interrupted evaluation already paid for, and the repeats done on a worker
that failed before the evaluation was handed to another. `metered()` wraps one scoring;
`settle()` adds to its evaluations whatever the meter saw that they do not account for, and
`claim()` gives an interrupted experiment the spend its meter collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from engine.model import Evaluation, Usage

_METER: ContextVar[Usage | None] = ContextVar("llm_meter", default=None)
#: The experiment being scored, for the call journal (engine/calls.py); None while proposing.
_EXPERIMENT: ContextVar[int | None] = ContextVar("llm_experiment", default=None)
#: Meters whose scoring ended by an exception (a stop), by (owner, experiment id).
_UNCLAIMED: dict[tuple[int, int], Usage] = {}


def charge(usage: Usage) -> None:
    """Add one reply's usage to the meter of the scoring under way, if any."""
    meter = _METER.get()
    if meter is not None:
        meter.add(usage)


@contextmanager
def metered(owner: Any, exp_id: int) -> Iterator[Usage]:
    """Charge every model call made inside to one meter (yielded). If the block ends by an
    exception (a stop cancels it), the meter is kept for `claim(owner, exp_id)`."""
    meter = Usage()
    token = _METER.set(meter)
    which = _EXPERIMENT.set(exp_id if exp_id > 0 else None)
    try:
        yield meter
    except BaseException:
        if meter.cost_usd or meter.tokens_in or meter.tokens_out or meter.calls:
            _UNCLAIMED[(id(owner), exp_id)] = meter
        raise
    finally:
        _EXPERIMENT.reset(which)
        _METER.reset(token)


def experiment() -> int | None:
    """The experiment whose scoring makes the model call under way (None: a proposal)."""
    return _EXPERIMENT.get()


def claim(owner: Any, exp_id: int, base: Usage | None = None) -> Usage:
    """`base` (e.g. the mutation's usage) plus what an interrupted scoring of `exp_id` spent."""
    total = Usage()
    if base is not None:
        total.add(base)
    spent = _UNCLAIMED.pop((id(owner), exp_id), None)
    if spent is not None:
        total.add(spent)
    return total


def settle(evals: list[Evaluation], meter: Usage) -> list[Evaluation]:
    """Make the evaluations account for everything the meter saw (lost repeats of a failed
    worker, calls of a crashed evaluation): the difference goes to the first one."""
    counted = Usage()
    for e in evals:
        counted.add(e.usage)
    missing = meter.cost_usd - counted.cost_usd
    seen = set(counted.calls)
    uncounted = [c for c in meter.calls if c not in seen]
    if evals and (missing > 1e-12 or uncounted):
        extra = Usage(max(0, meter.tokens_in - counted.tokens_in),
                      max(0, meter.tokens_out - counted.tokens_out),
                      max(0, meter.tokens_cache_write - counted.tokens_cache_write),
                      max(0, meter.tokens_cache_read - counted.tokens_cache_read),
                      max(0.0, missing), uncounted)
        evals[0].usage.add(extra)
    return evals
