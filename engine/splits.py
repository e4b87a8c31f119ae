"""Which of a checklist's inputs are held out (spec validation calls this, before anything runs;
engine/holdout.py says what held-out inputs are for)."""

from __future__ import annotations

import random
import re
from typing import Any

__all__ = ["held_out_test", "split_inputs"]


def split_inputs(inputs: list[str], holdout: Any) -> tuple[list[str], list[str] | None]:
    """(optimized inputs, held-out inputs) of a checklist; raises ValueError for a split that
    leaves nothing to optimize or holds out an input it also optimizes on."""
    if holdout is None:
        return inputs, None
    if isinstance(holdout, list):
        if not holdout:
            raise ValueError("holdout: name at least one input (or leave holdout out)")
        both = [i for i in holdout if i in inputs]
        if both:
            raise ValueError(f"holdout input {both[0][:60]!r} is also in `inputs`: an input "
                             "is either optimized on or held out")
        return inputs, list(holdout)
    n = len(inputs)
    k = max(1, round(holdout.fraction * n))
    if n - k < 1:
        raise ValueError(f"holdout.fraction {holdout.fraction:g} of {n} input(s) leaves none "
                         "to optimize on: give more inputs")
    chosen = set(random.Random(holdout.seed).sample(range(n), k))
    return ([x for i, x in enumerate(inputs) if i not in chosen],
            [x for i, x in enumerate(inputs) if i in chosen])


def held_out_test(pattern: str | None, name: str) -> bool:
    """Whether a test case (`class::name`) is held out by a tests spec's `holdout:` pattern."""
    return pattern is not None and re.search(pattern, name) is not None
