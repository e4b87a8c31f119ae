"""The target rule: "stop when the score reaches 0.95 three times in a row" means the best
version scores at least the target in three consecutive evaluations *of it* — the one that
made it the best, then re-evaluations. A best version that reaches the target is confirmed
at once by re-evaluating it (not by waiting for candidates to happen to score high), so a
run stops within `streak` evaluations of its best reaching the target; a re-evaluation below
the target ends the confirmation, and the run climbs on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.decide import improvement

if TYPE_CHECKING:
    from engine.context import RunContext as RunLoop  # (the loop's shared pieces)


def best_scores(loop: RunLoop) -> list[float | None]:
    """Scores of the best version's evaluations, oldest first: its own, then each
    re-evaluation of it (None for one that failed)."""
    if loop.best_id is None:
        return []
    # Its re-evaluations come after it: the (run_id, id) index bounds the scan to them.
    rows = loop.store.conn.execute(
        "SELECT score FROM experiments WHERE run_id = ? AND id >= ? AND (id = ? OR "
        "(kind = 'reeval' AND parent = ? AND verdict != 'running')) ORDER BY id",
        [loop.run_id, loop.best_id, loop.best_id, loop.best_id]).fetchall()
    return [r[0] for r in rows]


def streak(loop: RunLoop, scores: list[float | None]) -> int:
    """How many of the newest evaluations in a row reached the target (failed ones skipped)."""
    count = 0
    for score in reversed(scores):
        if score is None:
            continue
        if improvement(score, loop.target, loop.direction) < 0:
            break
        count += 1
    return count


def target_reached(loop: RunLoop) -> str | None:
    """The stop reason once the best version has reached the target `streak` times in a row."""
    if loop.target is None:
        return None
    need = loop.spec.stop.streak
    if streak(loop, best_scores(loop)) >= need:
        return (f"target {loop.target:g} reached: the best version #{loop.best_id} scored "
                f"≥ {loop.target:g} in {need} evaluation{'s' if need > 1 else ''} in a row")
    return None


def confirm_due(loop: RunLoop) -> bool:
    """True when the best version's newest evaluation reached the target but the streak is
    not complete: re-evaluate it now. Not after a failed re-evaluation (no endless retries)."""
    if loop.target is None or loop.best_id is None:
        return False
    scores = best_scores(loop)
    if not scores or scores[-1] is None:
        return False
    run = streak(loop, scores)
    return 0 < run < loop.spec.stop.streak
