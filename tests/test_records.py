"""Records written while the next evaluation runs (engine/records.py), and the double slot
folders that are synced meanwhile: nothing is lost, every evaluation starts clean."""

from __future__ import annotations

import asyncio
import textwrap

from engine.host import Host
from engine.records import MAX_WAIT_S, WaitingRecords
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import write


def _run(store: Store, tmp_path) -> int:
    return store.create_run("r", spec_path="", spec_json="{}", workspace=str(tmp_path),
                            direction="minimize", target=None)


async def test_a_started_row_lost_to_another_writes_rollback_is_inserted_again(tmp_path):
    store = Store(tmp_path / "a.db")
    run_id = _run(store, tmp_path)
    records = WaitingRecords(store, run_id)
    row = dict(round=1, kind="candidate", parent=None, description="x 1 → 2",
               files={"params.yaml": "x: 2\n"})
    exp = records.start(lambda again: store.start_experiment(
        run_id, commit=False, exp_id=again, **row))
    store.conn.rollback()  # what a failing write elsewhere on the connection does
    assert not store.has_experiment(exp, run_id)
    records.add(exp, dict(verdict="reverted", reason="worse", score=2.0))
    records.write()
    other = Store(tmp_path / "a.db", readonly=True)
    got = other.experiment(exp)
    assert (got["verdict"], got["score"], got["description"]) == ("reverted", 2.0, "x 1 → 2")
    assert other.version_files(exp) == {"params.yaml": "x: 2\n"}


async def test_a_waiting_record_lands_soon_even_when_no_evaluation_follows(tmp_path):
    store = Store(tmp_path / "a.db")
    run_id = _run(store, tmp_path)
    records = WaitingRecords(store, run_id)
    exp = records.start(lambda again: store.start_experiment(
        run_id, commit=False, exp_id=again, round=1, kind="candidate", parent=None))
    records.add(exp, dict(verdict="reverted", score=3.0))
    other = Store(tmp_path / "a.db", readonly=True)
    assert other.experiment(exp) is None  # not committed yet: another process cannot see it
    await asyncio.sleep(MAX_WAIT_S * 3)
    assert other.experiment(exp)["verdict"] == "reverted"
    assert not records.waiting and not records.open


def _start(records: WaitingRecords, store: Store, run_id: int, n: int) -> int:
    row = dict(round=n, kind="candidate", parent=None, description=f"x → {n}",
               diff=f"+x: {n}\n")

    def complete() -> None:  # as the loop does: the files come with the commit
        store.add_versions(exp, {"params.yaml": f"x: {n}\n"})

    exp = records.start(lambda again: store.start_experiment(
        run_id, commit=False, exp_id=again, **row), complete)
    return exp


async def test_fast_rounds_share_a_commit_and_a_rollback_loses_none_of_them(tmp_path,
                                                                             monkeypatch):
    """Rounds written at evaluations' first pauses within COMMIT_EVERY_S share one commit;
    a failing write elsewhere on the connection that rolls it back loses nothing."""
    monkeypatch.setattr("engine.records.COMMIT_EVERY_S", 60)  # a slow CI machine is no pause
    store = Store(tmp_path / "a.db")
    run_id = _run(store, tmp_path)
    records = WaitingRecords(store, run_id)
    other = Store(tmp_path / "a.db", readonly=True)
    records.write()  # a commit just now: the next pauses are too soon for another
    ids = []
    for n in range(1, 5):  # a round: its row, then the last one's outcome at the first pause
        ids.append(_start(records, store, run_id, n))
        if n > 1:
            records.add(ids[-2], dict(verdict="reverted", score=float(n - 1), reason="tie"))
        records.write(commit=False)
    assert store.in_transaction() and other.experiments(run_id) == []  # nothing committed yet
    assert store.experiment(ids[0])["verdict"] == "reverted"  # but written, on this connection

    store.conn.rollback()  # what a failing write elsewhere on the connection does
    records.add(ids[-1], dict(verdict="kept", score=4.0, reason="better"))
    records.write()
    rows = {r["id"]: r for r in other.experiments(run_id)}
    assert [rows[i]["verdict"] for i in ids] == ["reverted", "reverted", "reverted", "kept"]
    assert [rows[i]["score"] for i in ids] == [1.0, 2.0, 3.0, 4.0]
    assert all(other.version_files(i) == {"params.yaml": f"x: {n}\n"}
               for n, i in enumerate(ids, 1))
    assert [rows[i]["diff"] for i in ids] == [f"+x: {n}\n" for n in range(1, 5)]
    assert not records.open and not records.waiting


async def test_a_commit_comes_at_a_pause_once_commit_every_s_has_passed(tmp_path,
                                                                          monkeypatch):
    every = 0.3
    monkeypatch.setattr("engine.records.COMMIT_EVERY_S", every)
    monkeypatch.setattr("engine.records.MAX_WAIT_S", 60)  # no timer: only the pause commits
    store = Store(tmp_path / "a.db")
    run_id = _run(store, tmp_path)
    records = WaitingRecords(store, run_id)
    other = Store(tmp_path / "a.db", readonly=True)
    records.write()
    first = _start(records, store, run_id, 1)
    records.write(commit=False)
    assert other.experiment(first) is None
    await asyncio.sleep(every * 1.2)
    second = _start(records, store, run_id, 2)
    records.add(first, dict(verdict="reverted", score=1.0))
    records.write(commit=False)
    assert other.experiment(first)["verdict"] == "reverted"
    assert other.experiment(second)["verdict"] == "running"  # committed with it


async def test_another_writes_commit_in_between_is_harmless(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.records.COMMIT_EVERY_S", 60)
    store = Store(tmp_path / "a.db")
    run_id = _run(store, tmp_path)
    records = WaitingRecords(store, run_id)
    records.write()
    exp = _start(records, store, run_id, 1)
    records.write(commit=False)
    store.add_event(run_id, "another run's line")  # commits the open transaction with it
    records.add(exp, dict(verdict="reverted", score=1.0, events=[(run_id, exp, "info", "engine",
                                                                  "#1 reverted")]))
    records.write()
    other = Store(tmp_path / "a.db", readonly=True)
    assert other.experiment(exp)["verdict"] == "reverted"
    assert other.version_files(exp) == {"params.yaml": "x: 1\n"}
    lines = [e["line"] for e in other.events(run_id)]
    assert lines.count("#1 reverted") == 1 and "another run's line" in lines


async def test_every_evaluation_starts_from_a_clean_copy_of_the_workspace(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "params.yaml", "x: 5\n")
    write(ws / "data.txt", "original\n")
    # Dirty the folder every time; a leftover or a changed data file scores 99.
    write(ws / "check.sh", textwrap.dedent("""
        if [ -e leftover ] || [ "$(cat data.txt)" != "original" ]; then
            echo METRIC loss=99
        else
            echo METRIC loss=$(sed 's/x: //' params.yaml)
        fi
        touch leftover; echo dirty >> data.txt
    """))
    spec = tmp_path / "clean.yaml"
    write(spec, textwrap.dedent("""
        name: clean
        target: {workspace: ws, files: [params.yaml]}
        mutator: {kind: params, file: params.yaml, seed: 1,
                  params: {x: {type: int, min: 0, max: 1000}}}
        evaluate: {kind: metric, command: "sh check.sh", metric: loss, direction: minimize}
        stop: {max_rounds: 16, max_failures: null}
    """))
    store = Store(tmp_path / "a.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    await host.run_until_done()
    rows = store.experiments(loop.run_id)
    assert len(rows) == 17
    assert all(r["score"] is not None and r["score"] != 99 for r in rows), [
        (r["id"], r["score"]) for r in rows]
    assert all(r["verdict"] not in ("running", "interrupted") for r in rows)
    assert (ws / "data.txt").read_text() == "original\n" and not (ws / "leftover").exists()


async def test_the_runs_counters_are_written_once_a_commit_and_are_the_newest(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr("engine.records.COMMIT_EVERY_S", 60)
    store = Store(tmp_path / "a.db")
    run_id = _run(store, tmp_path)
    records = WaitingRecords(store, run_id)
    other = Store(tmp_path / "a.db", readonly=True)
    records.write()
    ids = [_start(records, store, run_id, n) for n in range(1, 4)]
    for n, exp in enumerate(ids, 1):
        records.add(exp, dict(verdict="reverted", score=float(n),
                              run_update={"rounds": n, "cost_usd": 0.5 * n}))
        records.write(commit=False)
    assert store.get_run(run_id)["rounds"] == 0  # not even on this connection yet
    records.write()  # a commit with no outcome waiting: the counters still go in
    run = other.get_run(run_id)
    assert (run["rounds"], run["cost_usd"]) == (3, 1.5)
    assert [e["verdict"] for e in other.experiments(run_id)] == ["reverted"] * 3


async def test_work_for_while_an_evaluation_runs_comes_after_its_process_started(tmp_path):
    """What waits for an evaluation's first pause (records, the spare folder, the next
    proposal) runs once the local process is running, not between one evaluation and the
    next: the callback finds the child already forked."""
    import os

    from engine.records import once_started
    from engine.workers.local import run_local

    pid = os.getpid()

    def children() -> set[str]:  # (other tests' servers may be children too)
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return set(f.read().split())

    before, seen = children(), []
    once_started(lambda: seen.append(children() - before))
    result = await run_local("sleep 0.2", tmp_path, timeout=10)
    assert result.exit_code == 0
    assert seen and seen[0], "the callback ran before the process was started"


async def test_runs_on_one_connection_share_a_commit_and_a_rollback_loses_neither(
        tmp_path, monkeypatch):
    """A library's runs write on one connection: a commit at one run's pause holds the
    others' started rows whole (their files) and their counters, and a failing write that
    rolls the shared transaction back is put right for every run, not only the next one to
    write."""
    monkeypatch.setattr("engine.records.COMMIT_EVERY_S", 60)
    monkeypatch.setattr("engine.records.MAX_WAIT_S", 60)  # no timer: only the writes below
    store = Store(tmp_path / "a.db")
    first_run, second_run = _run(store, tmp_path), store.create_run(
        "s", spec_path="", spec_json="{}", workspace=str(tmp_path), direction="minimize",
        target=None)
    first, second = WaitingRecords(store, first_run), WaitingRecords(store, second_run)
    other = Store(tmp_path / "a.db", readonly=True)
    first.write()
    a = _start(first, store, first_run, 1)
    b = _start(second, store, second_run, 2)
    second.add(b, dict(verdict="reverted", score=2.0, reason="worse",
                       run_update={"rounds": 1}))
    second.write(commit=False)  # too soon after the last commit: waits in the transaction
    assert other.experiments(second_run) == []

    store.conn.rollback()  # a failing write elsewhere on the connection
    first.write()  # the first run's pause commits, for both runs
    assert other.experiment(a)["verdict"] == "running"
    assert other.version_files(a) == {"params.yaml": "x: 1\n"}
    got = other.experiment(b)
    assert (got["verdict"], got["score"]) == ("reverted", 2.0)  # put back, then committed
    assert other.version_files(b) == {"params.yaml": "x: 2\n"}
    assert other.get_run("s")["rounds"] == 1  # its counters went with the commit
    assert not first.open and not second.open and not second.waiting


async def test_a_row_another_run_put_back_keeps_its_id_and_lands_within_max_wait(
        tmp_path, monkeypatch):
    """A rollback noticed when another run starts its next row: the lost row is inserted
    again first (the new row would otherwise take its id: a UNIQUE failure, then nothing
    written at all), its outcome is queued again, and its own run's timer writes it."""
    monkeypatch.setattr("engine.records.COMMIT_EVERY_S", 60)
    monkeypatch.setattr("engine.records.MAX_WAIT_S", 0.05)
    store = Store(tmp_path / "a.db")
    first_run, second_run = _run(store, tmp_path), store.create_run(
        "s", spec_path="", spec_json="{}", workspace=str(tmp_path), direction="minimize",
        target=None)
    first, second = WaitingRecords(store, first_run), WaitingRecords(store, second_run)
    first.write()
    b = _start(second, store, second_run, 2)
    second.add(b, dict(verdict="reverted", score=2.0, reason="worse"))
    second.write(commit=False)
    await asyncio.sleep(0.2)  # its timer came and went: the outcome is committed
    c = _start(second, store, second_run, 3)
    second.add(c, dict(verdict="reverted", score=3.0, reason="worse"))
    second.write(commit=False)  # in the open transaction only
    await asyncio.sleep(0)
    store.conn.rollback()  # lost: the row and its outcome
    _start(first, store, first_run, 1)  # the first run notices, puts back both, no commit
    other = Store(tmp_path / "a.db", readonly=True)
    assert other.experiment(c) is None
    await asyncio.sleep(0.3)
    assert (other.experiment(c) or {}).get("verdict") == "reverted"
    assert other.experiment(b)["verdict"] == "reverted"
