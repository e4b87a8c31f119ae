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
    exp = store.start_experiment(run_id, commit=False, **row)
    records.started(exp, lambda: store.start_experiment(run_id, exp_id=exp, **row))
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
    exp = store.start_experiment(run_id, commit=False, round=1, kind="candidate", parent=None)
    records.started(exp, lambda: None)
    records.add(exp, dict(verdict="reverted", score=3.0))
    other = Store(tmp_path / "a.db", readonly=True)
    assert other.experiment(exp) is None  # not committed yet: another process cannot see it
    await asyncio.sleep(MAX_WAIT_S * 3)
    assert other.experiment(exp)["verdict"] == "reverted"
    assert not records.waiting and not records.uncommitted


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
