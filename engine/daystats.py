"""Each run's figures for today, for the app's runs pane at library size (tui/roster.py):
two queries whatever the number of runs, each served by an index (beside engine/store.py,
which is at its size limit)."""

from __future__ import annotations

from typing import Any


def day_stats(store: Any, since: float) -> list[tuple[Any, ...]]:
    """Per run, over what finished since `since` (served by the finished index):
    (run, keeps, cost, sum of the keeps' deltas, time of the newest keep)."""
    return store.conn.execute(
        "SELECT run_id, SUM(verdict IN ('kept', 'pinned')), COALESCE(SUM(cost_usd), 0), "
        "SUM(CASE WHEN verdict IN ('kept', 'pinned') THEN delta END), "
        "MAX(CASE WHEN verdict IN ('kept', 'pinned') THEN finished END) "
        # `+run_id`: grouping by the bare column made SQLite walk the whole table in run
        # order (the experiments_run index) instead of reading only today's rows.
        "FROM experiments WHERE finished >= ? GROUP BY +run_id", [since]).fetchall()


def last_keeps(store: Any) -> dict[int, float]:
    """When each run's best version was kept (its best's finish; none while it is the
    baseline): one lookup per run by primary key, not a scan of the experiments."""
    return dict(store.conn.execute(
        "SELECT r.id, e.finished FROM runs r JOIN experiments e ON e.id = r.best_experiment "
        "WHERE e.kind != 'baseline' AND e.finished IS NOT NULL").fetchall())
