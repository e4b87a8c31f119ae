"""An idle engine stays asleep: its periodic work shares wakes (engine/cadence.py), steering
rings instead of being polled for (engine/bell.py), and a round's records, worker rows
included, go in one commit (engine/records.py). A wake costs a tenth to a quarter of a
millisecond of CPU here; at one run of 200 ms rounds, the timers' own wakes and commits were
a tenth to a quarter of the engine's CPU per round (bench/library.py, interleaved runs)."""

from __future__ import annotations

import asyncio
import io
import selectors
import time
from pathlib import Path

import pytest

from engine.headless import run_headless
from tests.conftest import metric_spec, write


class CountingSelector(selectors.EpollSelector):
    """Counts the selects that slept and were ended by a timer, not by an event."""

    def __init__(self) -> None:
        super().__init__()
        self.timer_wakes = 0

    def select(self, timeout: float | None = None):  # type: ignore[override]
        began = time.monotonic()
        events = super().select(timeout)
        if not events and timeout and time.monotonic() - began >= 0.001:
            self.timer_wakes += 1
        return events


def test_an_engine_waiting_on_a_long_evaluation_wakes_about_once_a_second(
        tmp_path: Path, params_workspace: Path) -> None:
    write(params_workspace / "score.py", """
        import time
        time.sleep(3)
        print("METRIC loss=1")
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 1")
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)
    try:
        began = time.monotonic()
        loop.run_until_complete(run_headless(tmp_path / "s.db", [str(spec)], out=io.StringIO()))
        seconds = time.monotonic() - began
    finally:
        loop.close()
    assert seconds > 5.5  # (two evaluations of 3 s)
    # Every periodic timer is on the one-second beat, or rarer; five a second before.
    assert selector.timer_wakes <= 1.5 * seconds, (selector.timer_wakes, seconds)


@pytest.mark.parametrize("rounds", [12])
def test_a_round_of_one_run_is_one_commit_worker_rows_included(
        tmp_path: Path, params_workspace: Path, rounds: int) -> None:
    import sqlite3

    from engine import store as stores

    write(params_workspace / "score.py", """
        import time, yaml
        time.sleep(0.25)
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7)}")
    """)
    spec = metric_spec(params_workspace, stop=f"max_rounds: {rounds}")
    commits: list[str] = []
    opened = stores.Store.__init__

    def traced(self, *args, **kwargs) -> None:
        opened(self, *args, **kwargs)
        if isinstance(self.conn, sqlite3.Connection):
            self.conn.set_trace_callback(
                lambda sql: commits.append(sql) if sql.startswith("COMMIT") else None)

    stores.Store.__init__ = traced  # type: ignore[method-assign]
    try:
        asyncio.run(run_headless(tmp_path / "s.db", [str(spec)], out=io.StringIO()))
    finally:
        stores.Store.__init__ = opened  # type: ignore[method-assign]
    store = stores.Store(tmp_path / "s.db", readonly=True)
    run = store.get_run("toy")
    assert len([e for e in store.experiments(run["id"]) if e["kind"] != "baseline"]) == rounds
    assert {w["status"] for w in store.workers(run["id"])} == {"stopped"}
    kept = len([e for e in store.experiments(run["id"]) if e["verdict"] == "kept"])
    # A commit a round (and one more for a keep, committed at once), and about a dozen for
    # starting, the baseline and stopping: the worker rows' own commits made it two a round.
    assert len(commits) <= rounds + kept + 14, (len(commits), kept)
