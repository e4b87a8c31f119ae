"""Lines changed in place: what a parameter's edit does to a file (same lines, some values
changed). Read off line by line, without difflib's matcher, for the diffs of candidates
(engine/workspace.py) and the stored deltas of reverted versions (engine/retention.py)."""

from __future__ import annotations


def changed_runs(a: list[str], b: list[str]) -> list[tuple[int, int]] | None:
    """The [start, stop) spans of consecutive lines that differ between `a` and `b`, in
    order; None when lines were added or removed (not a change in place)."""
    if len(a) != len(b):
        return None
    runs: list[tuple[int, int]] = []
    start = -1
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            if start < 0:
                start = i
        elif start >= 0:
            runs.append((start, i))
            start = -1
    if start >= 0:
        runs.append((start, len(a)))
    return runs
