"""What the params search knows of scores: each candidate's score, and how near its checks
came to their bars, as one rank per value combination.

A pass-rate score is flat almost everywhere: most candidates tie the best and are
reverted, and a verdict says nothing about which of them came closer. A checklist's
numeric checks say more — `val_acc = 0.9667 (wants ≥ 0.97)` is a near miss, `0.15` a far
one — so a candidate is ranked by its score first and by its soft score second: the mean
over its checks of how near each came, from its margin (the signed distance to the bar in
units of the bar, engine/evaluators/checks.py). The search then steps from the best-ranked
version (a tie that came nearer, not only the best) and models the top of the ranking.
Where no check has a margin (a judge's yes/no) the search learns from verdicts alone, as
before: on the synthetic checklists of bench/search.py a tie of scores alone, followed,
did worse than the verdicts.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from engine.model import ItemResult

#: How sharply a margin counts: 0.1 of the bar is most of the way to a full pass or fail.
SOFT_K = 10.0
#: The weight of a passing check's headroom against a failing one's distance.
PASSING = 0.1
#: The soft score of a candidate whose checks have no margins (ranks below any that has).
UNKNOWN_SOFT = -math.inf

Rank = tuple[float, float, int]


def soft_score(items: Iterable[ItemResult]) -> float | None:
    """The mean over the checks that have a margin of how near they came (`_soft`);
    None if none has one."""
    margins = [i.margin for i in items if i.margin is not None]
    if not margins:
        return None
    return sum(_soft(m) for m in margins) / len(margins)


def _soft(margin: float) -> float:
    """A failing check's distance counts in full, compressed (log) but never flat, so a far
    miss coming nearer still ranks higher; a passing one's headroom counts a little (a
    version well inside its bars stays inside them on a noisier evaluation)."""
    if margin < 0:
        return -math.log1p(SOFT_K * min(-margin, 1e6)) / math.log1p(SOFT_K)
    return PASSING * math.tanh(SOFT_K * margin)


class Ranks:
    """Score and soft score per value combination, higher is better whatever the run's
    direction; bounded (the oldest are forgotten)."""

    def __init__(self, limit: int, maximize: bool = True) -> None:
        self.limit, self.sign = limit, 1.0 if maximize else -1.0
        self._ranks: OrderedDict[tuple[Any, ...], Rank] = OrderedDict()
        self._top: tuple[tuple[Any, ...], Rank] | None = None
        self._count = 0
        #: How many of the ranks have a soft score (none on a metric run: the model then
        #: skips ranking, engine/mutators/paramsearch.py).
        self.with_margins = 0

    def __len__(self) -> int:
        return len(self._ranks)

    def rank_of(self, score: float, soft: float | None) -> tuple[float, float]:
        return self.sign * score, UNKNOWN_SOFT if soft is None else soft

    def add(self, key: tuple[Any, ...], score: float, soft: float | None) -> Rank:
        """Record a candidate's score; the newest of equals ranks first (a plateau walk)."""
        self._count += 1
        rank = (*self.rank_of(score, soft), self._count)
        self._count_margins(self._ranks.get(key), -1)
        self._count_margins(rank, 1)
        self._ranks[key] = rank
        self._ranks.move_to_end(key)
        if self._top is None or rank > self._top[1]:
            self._top = (key, rank)
        while len(self._ranks) > self.limit:
            old, forgotten = self._ranks.popitem(last=False)
            self._count_margins(forgotten, -1)
            if self._top is not None and old == self._top[0]:
                self._top = max(self._ranks.items(), key=lambda kv: kv[1])
        return rank

    def _count_margins(self, rank: Rank | None, step: int) -> None:
        if rank is not None and rank[1] != UNKNOWN_SOFT:
            self.with_margins += step

    def get(self, key: tuple[Any, ...]) -> Rank | None:
        return self._ranks.get(key)

    def top(self) -> tuple[tuple[Any, ...], Rank] | None:
        """The best-ranked combination and its rank."""
        return self._top

    def ordered(self, keys: Iterable[tuple[Any, ...]],
                margins_only: bool = False) -> list[tuple[Any, ...]]:
        """Those of `keys` that have a rank (`margins_only`: a soft score too), best first."""
        get = self._ranks.get
        known = [(rank, k) for k in keys if (rank := get(k)) is not None
                 and not (margins_only and rank[1] == UNKNOWN_SOFT)]
        known.sort(reverse=True)
        return [k for _, k in known]
