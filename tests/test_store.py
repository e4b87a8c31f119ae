"""The store's write path: one transaction per finished experiment, and a write-ahead log
that stays bounded while the engine writes without pause."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine import store as store_module
from engine.model import Usage
from engine.store import Store


def _start(store: Store, run_id: int, round_no: int) -> int:
    return store.start_experiment(run_id, round=round_no, kind="candidate", parent=None,
                                  description=f"x {round_no}", diff="-x\n+y\n",
                                  files={"params.yaml": f"x: {round_no}\n"})


def _new_run(store: Store, tmp_path) -> int:
    return store.create_run("r", spec_path="", spec_json="{}", workspace=str(tmp_path),
                            direction="minimize", target=None)


def test_finish_records_decision_and_event_lines_with_the_outcome(tmp_path):
    store = Store(tmp_path / "a.db")
    run_id = _new_run(store, tmp_path)
    exp = _start(store, run_id, 1)
    store.set_decision(exp, {"retest_of": 7})
    store.finish_experiment(exp, verdict="kept", reason="better", score=0.5,
                            usage=Usage(), run_update={"rounds": 1},
                            decision={"gain": 0.25, "p": None},
                            events=[(run_id, exp, "info", "local:0", "METRIC loss=0.5"),
                                    (run_id, exp, "info", "engine", "#1 kept")])
    row = store.experiment(exp)
    assert row["verdict"] == "kept" and row["score"] == 0.5
    assert row["decision_json"] == '{"retest_of": 7, "gain": 0.25, "p": null}'
    assert [e["line"] for e in store.events(run_id)] == ["METRIC loss=0.5", "#1 kept"]
    assert store.get_run(run_id)["rounds"] == 1


def test_a_failed_finish_writes_none_of_it(tmp_path):
    store = Store(tmp_path / "a.db")
    run_id = _new_run(store, tmp_path)
    exp = _start(store, run_id, 1)
    reader = Store(tmp_path / "a.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        reader.finish_experiment(exp, verdict="kept", score=1.0, decision={"gain": 1.0},
                                 events=[(run_id, exp, "info", "engine", "never written")])
    assert store.experiment(exp)["verdict"] == "running"
    assert store.events(run_id) == []


def test_the_write_ahead_log_stays_bounded_while_the_engine_writes_without_pause(
        tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "WAL_CAP_BYTES", 1 << 20)
    store = Store(tmp_path / "a.db")
    store._checkpointer = store_module.Checkpointer(store.path, every_s=0.05)
    store.conn.execute("PRAGMA wal_autocheckpoint=0")
    run_id = _new_run(store, tmp_path)
    wal = tmp_path / "a.db-wal"
    deadline, round_no = time.monotonic() + 20.0, 0
    # ~50 KB of log a round with no pause between rounds, until 40 MB went through the log.
    while round_no < 1_000 and time.monotonic() < deadline:
        round_no += 1
        exp = _start(store, run_id, round_no)
        store.finish_experiment(exp, verdict="reverted", score=1.0,
                                run_update={"rounds": round_no},
                                events=[(run_id, exp, "info", "engine", "line")])
    assert round_no == 1_000, "the machine was too slow to test this"
    # The cap (1 MB here), plus what is written between two looks at it, plus a missed turn.
    assert wal.stat().st_size < 12 << 20
    store.close()
    check = Store(tmp_path / "a.db", readonly=True)
    assert len(check.experiments(run_id)) == round_no


def test_a_steering_command_gets_through_a_lock_held_in_short_bursts(tmp_path):
    """An engine recording fast rounds lets go of the write lock for a moment every few
    milliseconds; a command from another process tries every millisecond and gets in
    (SQLite's own waits grow to 100 ms and miss the gaps: seconds, here)."""
    engine = Store(tmp_path / "a.db")
    run_id = _new_run(engine, tmp_path)
    steering = Store(tmp_path / "a.db")
    busy = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, time
        conn = sqlite3.connect({str(tmp_path / "a.db")!r}, timeout=30, isolation_level=None)
        end = time.monotonic() + 20
        while time.monotonic() < end:  # locked 9.5 ms, free 0.5 ms, busy like an engine
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE runs SET rounds = rounds + 1")
            until = time.monotonic() + 0.0095
            while time.monotonic() < until:
                pass
            conn.execute("COMMIT")
            until = time.monotonic() + 0.0005
            while time.monotonic() < until:
                pass
    """)])
    try:
        while engine.get_run(run_id)["rounds"] < 5:
            time.sleep(0.01)
        took = []
        for _ in range(15):
            started = time.monotonic()
            steering.add_command(run_id, "pause")
            took.append(time.monotonic() - started)
    finally:
        busy.kill()
        busy.wait()
    assert len(steering.commands(run_id)) == 15
    assert max(took) < 1.5, took  # typically under 0.1 s


def test_a_command_that_must_not_wait_returns_none_while_the_lock_is_taken(tmp_path):
    engine = Store(tmp_path / "a.db")
    run_id = _new_run(engine, tmp_path)
    engine.start_experiment(run_id, round=1, kind="candidate", parent=None, commit=False)
    steering = Store(tmp_path / "a.db")
    started = time.monotonic()
    assert steering.add_command(run_id, "pause", wait=False) is None
    assert time.monotonic() - started < 0.5
    engine.commit()
    assert steering.add_command(run_id, "pause", wait=False) is not None


async def test_a_command_on_the_engines_event_loop_waits_without_stopping_the_loop(tmp_path):
    """An engine leaves its transaction open between rounds and commits it from the loop;
    a waiting add_command there would stop the loop and so never get the lock (CI saw
    that). On a running loop it refuses to wait; send_command waits letting the loop run."""
    engine = Store(tmp_path / "a.db")
    run_id = _new_run(engine, tmp_path)
    engine.start_experiment(run_id, round=1, kind="candidate", parent=None, commit=False)
    asyncio.get_running_loop().call_later(0.2, engine.commit)  # as records.py's timer does
    steering = Store(tmp_path / "a.db")
    with pytest.raises(RuntimeError, match="send_command"):
        steering.add_command(run_id, "pause")
    started = time.monotonic()
    cid = await steering.send_command(run_id, "pause")
    assert 0.15 < time.monotonic() - started < 2
    assert steering.command(cid)["verb"] == "pause"


def test_the_store_writes_without_importing_pandas_or_numpy(tmp_path):
    """sqlite-utils imports pandas and numpy when installed (half a second and ~45 MB for
    every command that writes); the store's first write imports neither, and a later
    import of pandas by someone else still works."""
    code = (f"import sys\nfrom engine.store import Store\ns = Store({str(tmp_path / 'a.db')!r})\n"
            "s.db\ns.create_run('r', spec_path='s.yaml', spec_json='{}', workspace='.', direction='maximize', target=None)\n"
            "print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules))\n"
            "import importlib.util\n"
            "if importlib.util.find_spec('pandas'):\n    import pandas\n    print('pandas', bool(pandas.DataFrame))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).resolve().parent.parent)).stdout
    assert out.splitlines()[0] == "[]", out
