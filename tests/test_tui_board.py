"""The app's model of the store (tui/board.py) and the numbers it shows (tui/summary.py),
against a real SQLite store: what a poll finds, and the rules behind the status line."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from engine.model import ItemResult
from engine.store import Store
from tui.board import Board
from tui.fixtures import build_store
from tui.summary import chart_series, fmt_delta, noise_band, stop_outlook


def new_run(store: Store, name: str = "r", direction: str = "maximize") -> int:
    return store.create_run(name, spec_path="", spec_json="{}", workspace="/w",
                            direction=direction, target=None)


def test_poll_sees_an_experiment_start_and_its_verdict_land(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    run = new_run(store)
    board = Board(Store(tmp_path / "s.db"))
    board.load()
    board.select(run)
    assert list(board.spark(run)) == []  # read now, then kept current by the polls
    exp = store.start_experiment(run, round=1, kind="candidate", parent=None, description="a")
    changes = board.poll()
    assert [r["id"] for r in changes.experiments] == [exp]
    assert exp in board.running
    assert board.poll().experiments == []  # nothing new: nothing reported twice
    store.finish_experiment(exp, verdict="kept", score=0.5, items=[ItemResult("x", True)])
    changes = board.poll()
    assert [(r["id"], r["verdict"]) for r in changes.experiments] == [(exp, "kept")]
    assert exp not in board.running
    assert list(board.spark(run)) == [0.5]
    assert board.detail is not None and board.detail.points[exp] == [1, "kept", 0.5]
    assert board.detail.recent[0]["verdict"] == "kept"


def test_a_finish_committed_out_of_timestamp_order_is_not_missed(tmp_path: Path) -> None:
    """Two engine processes: B's later timestamp commits first, then A's earlier one."""
    store = Store(tmp_path / "s.db")
    run = new_run(store)
    a = store.start_experiment(run, round=1, kind="candidate", parent=None)
    b = store.start_experiment(run, round=2, kind="candidate", parent=None)
    board = Board(Store(tmp_path / "s.db"))
    board.load()
    store.finish_experiment(b, verdict="reverted", score=0.1)
    assert [r["id"] for r in board.poll().experiments] == [b]
    store.finish_experiment(a, verdict="reverted", score=0.2)
    # Simulate the other engine's clock: its finish is stamped a second before B's.
    finished_b = store.experiment(b)["finished"]
    store.db.execute("UPDATE experiments SET finished = ? WHERE id = ?", [finished_b - 1, a])
    store.db.conn.commit()
    assert [r["id"] for r in board.poll().experiments] == [a]


def test_a_command_is_reported_applied_once_with_its_result(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    run = new_run(store)
    board = Board(Store(tmp_path / "s.db"))
    board.load()
    cid = board.send(run, "pause")
    changes = board.poll()
    assert [c["id"] for c in changes.commands] == [cid] and changes.applied == []
    store.mark_applied(cid, "paused")
    changes = board.poll()
    assert [(c["id"], c["result"]) for c in changes.applied] == [(cid, "paused")]
    assert cid in board.mine and cid not in board.pending
    assert board.poll().applied == []


def test_verdicts_rewritten_in_place_are_found(tmp_path: Path) -> None:
    """A veto reverts a kept chain with no timestamp moving: the board still notices."""
    store = Store(tmp_path / "s.db")
    run = new_run(store)
    ids = []
    for n in range(3):
        exp = store.start_experiment(run, round=n, kind="candidate", parent=None)
        store.finish_experiment(exp, verdict="kept", score=n)
        ids.append(exp)
    # They finished a minute ago: outside the window a poll re-reads.
    store.db.execute("UPDATE experiments SET finished = finished - 60")
    store.db.conn.commit()
    board = Board(Store(tmp_path / "s.db"))
    board.load()
    board.select(run)
    store.set_verdict(ids[1], "vetoed", "vetoed")
    store.set_verdict(ids[2], "vetoed", f"built on vetoed #{ids[1]}")
    assert board.poll().experiments == []
    assert [e for e, _, _ in board.rewritten_verdicts(run, ids[0])] == ids[1:]
    assert board.detail.points[ids[2]][1] == "vetoed"
    assert board.rewritten_verdicts(run, ids[0]) == []


def test_a_new_run_appears_on_the_next_poll(tmp_path: Path) -> None:
    board = Board(Store(tmp_path / "s.db"))
    board.load()
    assert board.runs == {}
    run = new_run(Store(tmp_path / "s.db"), "late")
    assert board.poll().runs == {run}
    assert board.runs[run]["name"] == "late"


def rows(*verdicts: str, score: float = 0.5) -> list[dict]:
    """Newest first, as the board keeps them."""
    return [{"verdict": v, "kind": "baseline" if v == "baseline" else "candidate",
             "score": None if v in ("crashed", "invalid") else score} for v in verdicts]


def test_stop_outlook_lists_the_nearest_stop_first() -> None:
    run = {"rounds": 18, "elapsed": 30.0, "status": "done", "cost_usd": 0.0, "target": None,
           "direction": "maximize"}
    spec = {"stop": {"max_rounds": 20, "max_minutes": 10, "plateau": 4, "max_failures": 5}}
    outlook = stop_outlook(run, spec, rows("reverted", "reverted", "kept"), time.time())
    assert [o.text for o in outlook] == ["2 rounds left", "plateau 2/4", "9m30s left"]


def test_stop_outlook_counts_the_target_streak_and_failures() -> None:
    run = {"rounds": 3, "elapsed": 0.0, "status": "running", "cost_usd": 0.5, "target": 0.9,
           "direction": "maximize"}
    spec = {"stop": {"streak": 3, "max_failures": 4, "max_cost_usd": 2.0}}
    recent = rows("crashed", "invalid", score=0.0) + rows("kept", "kept", score=0.95)
    texts = [o.text for o in stop_outlook(run, spec, recent, time.time())]
    assert "target 0.9: 2/3 in a row" in texts  # crashed rows have no score: skipped
    assert "failures 2/4 in a row" in texts
    assert "$1.50 budget left" in texts


def test_live_elapsed_counts_on_from_the_heartbeat_only_while_an_engine_holds_the_run() -> None:
    now = time.time()
    live = {"rounds": 0, "elapsed": 60.0, "status": "running", "engine_pid": 1,
            "heartbeat": now - 30, "cost_usd": 0, "target": None}
    spec = {"stop": {"max_minutes": 2}}
    assert stop_outlook(live, spec, [], now)[0].text == "30s left"
    dead = {**live, "engine_pid": None}
    assert stop_outlook(dead, spec, [], now)[0].text == "1m00s left"


def test_noise_band_reads_the_shapes_it_may_be_given() -> None:
    assert noise_band(None) == (None, "")
    assert noise_band(json.dumps({"band": 0.5, "n": 5})) == (0.5, "±0.5 over 5 evals")
    assert noise_band(json.dumps({"sd": 1.5})) == (3.0, "±3 (2σ)")
    assert noise_band("0.25") == (0.25, "±0.25")
    assert noise_band("not json")[0] is None  # shown as is, never a traceback
    assert noise_band(json.dumps({"cv": 0.02}))[1] == "cv=0.02"


def test_delta_arrows_follow_the_direction() -> None:
    assert fmt_delta(-3.0, "minimize") == ("-3", True)
    assert fmt_delta(-3.0, "maximize") == ("-3", False)
    assert fmt_delta(0.0, "maximize") == ("+0", None)


def test_chart_keeps_every_kept_point_and_thins_the_rest(tmp_path: Path) -> None:
    store = build_store(tmp_path / "s.db", runs=1, experiments=5000)
    points = {r[0]: [r[1], r[2], r[3]] for r in store.score_points(1)}
    series = chart_series(points, max_points=400)
    kept = sum(1 for p in points.values() if p[1] in ("baseline", "kept"))
    assert len(series.kept[0]) == kept
    assert len(series.reverted[0]) <= 400
    # The best-so-far line ends at the run's best score.
    assert series.best[1][-1] == store.get_run(1)["best_score"]
    # Steps: the best never changes without a kept point at that round.
    assert set(series.best[0]) <= set(series.kept[0]) | {series.best[0][-1]}


def test_the_apps_improvement_rule_is_the_engines() -> None:
    """summary.improvement restates engine.decide.improvement (to start faster): same answers."""
    from engine.decide import improvement as engine_rule
    from tui.summary import improvement

    for a, b in [(1.0, 2.0), (2.0, 1.0), (3.0, 3.0), (-1.5, 0.25)]:
        for direction in ("maximize", "minimize"):
            assert improvement(a, b, direction) == engine_rule(a, b, direction)


def test_a_command_the_lock_holds_back_waits_without_blocking_and_is_sent_later(
        tmp_path: Path) -> None:
    """An engine on the app's own event loop may hold the write lock: waiting for it there
    would wait forever, so the command waits in `unsent` and goes once the lock is free."""
    store = Store(tmp_path / "s.db")
    run = new_run(store)
    board = Board(Store(tmp_path / "s.db"))
    board.load()
    store.start_experiment(run, round=1, kind="candidate", parent=None, commit=False)
    started = time.monotonic()
    assert board.send(run, "pause") is None and board.send(run, "veto", 7) is None
    assert time.monotonic() - started < 1  # did not wait for the busy timeout
    assert not board.send_unsent() and len(board.unsent) == 2
    store.commit()
    assert board.send_unsent() and not board.unsent
    rows = sorted(store.commands(run), key=lambda c: c["id"])
    assert [(c["verb"], c["target"]) for c in rows] == [("pause", None), ("veto", 7)]
    assert board.mine == {c["id"] for c in rows} == board.pending


def test_the_apps_connection_refuses_any_write_that_could_wait_for_the_lock(
        tmp_path: Path) -> None:
    """The class guard: a write on the app's connection outside try_write (one that would
    wait for the lock on the engine's loop) fails at once, reads still work, and the
    person's writes through the board still land."""
    store = Store(tmp_path / "s.db")
    run = new_run(store)
    mine = Store(tmp_path / "s.db")
    mine.only_writes_that_never_wait()  # as the app opens its connection (tui/app.py)
    board = Board(mine)
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        board.store.add_event(run, "a write that could wait")
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        board.store.conn.execute("DELETE FROM commands")
    assert board.store.get_run("r")["id"] == run  # reads are not writes
    exp_id = store.start_experiment(run, round=0, kind="baseline", parent=None)
    assert board.send(run, "pause") is not None
    assert board.write(lambda: board.store.add_label(exp_id, "clear", "", 0, True))
    assert [c["verb"] for c in store.commands(run)] == ["pause"]
    assert [(r["item"], r["label"]) for r in store.labels(run)] == [("clear", 1)]
    assert store.events(run) == []
