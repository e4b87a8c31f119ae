"""The params search's newest observations as arrays, grown as observations are added.

The model and the restarts read the newest observations every proposal: their unit
coordinates as one matrix, and which were kept. Rebuilt each time, that was a Python loop
over up to 160 observations a proposal, the largest single share of a fast round's
interpreter work (bench/engine_overhead.py). Observations are only appended, and the oldest
dropped in steps (engine/mutators/paramsearch.py), so the arrays take the new rows only and
are built afresh when the list was trimmed or replaced (an undone proposal puts back a copy).
"""

from __future__ import annotations

import operator
from itertools import compress
from typing import Any

import numpy as np

from engine.mutators.paramspace import matrix


class Window:
    """The newest `size` observations of a list, with their points and kept flags."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._of: list[Any] | None = None
        self._count = 0
        self._last: object = None
        self._points: np.ndarray | None = None
        self._kept: list[bool] = []

    def _update(self, observed: list[Any]) -> None:
        count = self._count
        if not (self._of is observed and count <= len(observed)
                and (count == 0 or observed[count - 1] is self._last)):
            self._of, count, self._points, self._kept = observed, 0, None, []
        new = observed[count:]
        if new:  # (the arrays hold the newest `size` rows and the new ones)
            rows = matrix([o.point for o in new])
            self._points = rows if self._points is None else np.concatenate(
                [self._points[-self.size:], rows])
            self._kept = self._kept[-self.size:] + [o.kept for o in new]
            self._count, self._last = len(observed), observed[-1]

    def points(self, observed: list[Any]) -> np.ndarray | None:
        """The newest observations' unit coordinates, oldest first (None: there are none)."""
        self._update(observed)
        return None if self._points is None else self._points[-self.size:]

    def by_verdict(self, observed: list[Any]) -> tuple[list[Any], np.ndarray | None,
                                                       list[Any], np.ndarray | None]:
        """The newest observations kept, with their points, and the others, with theirs
        (each oldest first; a side with none has an empty list and None)."""
        points = self.points(observed)
        if points is None:
            return [], None, [], None
        seen, kept = observed[-self.size:], self._kept[-self.size:]
        at = np.array(kept, bool)
        good = list(compress(seen, kept))
        bad = list(compress(seen, map(operator.not_, kept)))
        return (good, points[at] if good else None, bad, points[~at] if bad else None)
