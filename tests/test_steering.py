"""Steering through the commands table: pause, resume, stop, veto, pin, guide — applied by the
engine within a second, recorded, and visible to any reader of the store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import metric_spec, write


async def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def slow_workspace(ws: Path, seconds: float) -> None:
    write(ws / "score.py", f"""
        import time, yaml
        time.sleep({seconds})
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={{abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}}")
    """)


async def start(tmp_path: Path, spec: Path) -> tuple[Host, Store, Store, asyncio.Task]:
    db = tmp_path / "a.db"
    engine_store = Store(db)
    host = Host(engine_store)
    host.add(load_spec(spec))
    task = asyncio.create_task(host.run_until_done())
    ui = Store(db)  # a second connection, as the TUI or `attach` has
    await wait_for(lambda: ui.get_run("toy")["best_experiment"])
    return host, engine_store, ui, task


async def test_pause_resume_and_stop_are_applied_within_a_second(tmp_path, params_workspace):
    slow_workspace(params_workspace, 0.2)
    host, _, ui, task = await start(tmp_path, metric_spec(params_workspace, stop="max_rounds: 500"))
    run_id = ui.get_run("toy")["id"]
    sent = time.monotonic()
    cmd = await ui.send_command(run_id, "pause")
    await wait_for(lambda: ui.command(cmd)["applied"], timeout=1.0)
    assert time.monotonic() - sent < 1.0
    assert ui.get_run("toy")["status"] == "paused"
    await asyncio.sleep(0.5)  # the experiment in flight lands, then nothing new starts
    count = len(ui.experiments(run_id))
    await asyncio.sleep(0.8)
    assert len(ui.experiments(run_id)) == count
    await ui.send_command(run_id, "resume")
    await wait_for(lambda: len(ui.experiments(run_id)) > count)
    stop = await ui.send_command(run_id, "stop")
    await asyncio.wait_for(task, 10)
    assert ui.command(stop)["result"] == "stopping"
    run = ui.get_run("toy")
    assert run["status"] == "stopped"
    assert all(e["verdict"] != "running" for e in ui.experiments(run_id))
    events = [e["line"] for e in ui.events(run_id)]
    assert "pause: paused" in events and "resume: resumed" in events


async def test_stop_abandons_the_evaluation_in_flight_and_records_it(tmp_path, params_workspace):
    slow_workspace(params_workspace, 0.0)
    spec = metric_spec(params_workspace, stop="max_rounds: 500")
    host, _, ui, task = await start(tmp_path, spec)
    slow_workspace(params_workspace, 30)  # candidates copy this: they hang
    run_id = ui.get_run("toy")["id"]
    # The running candidate was staged before the rewrite, so wait for one that hangs.
    await wait_for(lambda: any(e["verdict"] == "running" and e["started"] < time.time() - 0.5
                               for e in ui.experiments(run_id)))
    await ui.send_command(run_id, "stop")
    await asyncio.wait_for(task, 5)
    last = ui.experiments(run_id)[-1]
    assert last["verdict"] == "interrupted"


async def test_veto_of_a_kept_experiment_reverts_it_and_what_was_built_on_it(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 40, target: 0, streak: 1")
    db = tmp_path / "a.db"
    store = Store(db)
    host = Host(store)
    loop = host.add(load_spec(spec))
    await host.run_until_done()
    kept = [e for e in store.experiments(loop.run_id) if e["verdict"] == "kept"]
    assert len(kept) >= 2
    # A new engine picks the run up; veto the first keep while it is hosted.
    spec.write_text(spec.read_text().replace("max_rounds: 40", "max_rounds: 400"))
    host = Host(store)
    loop = host.add(load_spec(spec))
    loop.paused = True
    task = asyncio.create_task(host.run_until_done())
    await asyncio.sleep(0.3)
    cmd = await store.send_command(loop.run_id, "veto", target=kept[0]["id"])
    await wait_for(lambda: store.command(cmd)["applied"])
    assert store.command(cmd)["result"] == f"reverted #{kept[0]['id']} and {len(kept) - 1} built on it"
    verdicts = {e["id"]: e["verdict"] for e in store.experiments(loop.run_id)}
    assert all(verdicts[e["id"]] == "vetoed" for e in kept)
    run = store.get_run("toy")
    baseline = store.experiments(loop.run_id)[0]
    assert run["best_experiment"] == baseline["id"] and run["best_score"] == baseline["score"]
    assert (params_workspace / "params.yaml").read_text() == store.version_files(baseline["id"])["params.yaml"]
    # The vetoed idea reaches the view of the changelog a mutator that reads it gets (the
    # params mutator here does not, so it is asked to) as banned.
    loop.mutator.reads_history = True
    proposal = loop.proposer.proposal(loop.versions.best)
    assert any(e["verdict"] == "vetoed" and e["description"] == kept[0]["description"]
               for e in proposal.changelog)
    await store.send_command(loop.run_id, "stop")
    await asyncio.wait_for(task, 10)


async def test_pin_makes_a_reverted_experiment_the_protected_best(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 6")
    db = tmp_path / "a.db"
    store = Store(db)
    host = Host(store)
    loop = host.add(load_spec(spec))
    await host.run_until_done()
    reverted = next(e for e in store.experiments(loop.run_id) if e["verdict"] == "reverted")
    spec.write_text(spec.read_text().replace("max_rounds: 6", "max_rounds: 600"))
    host = Host(store)
    loop = host.add(load_spec(spec))
    loop.paused = True
    task = asyncio.create_task(host.run_until_done())
    pin = await store.send_command(loop.run_id, "pin", target=reverted["id"])
    await wait_for(lambda: store.command(pin)["applied"])
    assert "made the best version" in store.command(pin)["result"]
    run = store.get_run("toy")
    assert run["best_experiment"] == reverted["id"]
    assert store.experiment(reverted["id"])["verdict"] == "pinned"
    expected = store.version_files(reverted["id"])["params.yaml"]
    assert (params_workspace / "params.yaml").read_text() == expected
    veto = await store.send_command(loop.run_id, "veto", target=reverted["id"])
    await wait_for(lambda: store.command(veto)["applied"])
    assert store.command(veto)["result"] == f"#{reverted['id']} is pinned"
    guide = await store.send_command(loop.run_id, "guide", argument="try smaller x")
    await wait_for(lambda: store.command(guide)["applied"])
    loop.mutator.reads_history = True  # guidance reaches mutators that read it
    assert loop.proposer.proposal(loop.versions.best).guidance == ["try smaller x"]
    await store.send_command(loop.run_id, "stop")
    await asyncio.wait_for(task, 10)


async def test_a_command_rings_the_engine_and_is_applied_at_once(tmp_path, params_workspace,
                                                                 monkeypatch):
    """The writer rings (engine/bell.py): applied long before the poller's next look."""
    import engine.host as hosting

    monkeypatch.setattr(hosting, "COMMAND_POLL_S", 30.0)
    slow_workspace(params_workspace, 0.2)
    host, _, ui, task = await start(tmp_path, metric_spec(params_workspace, stop="max_rounds: 500"))
    run_id = ui.get_run("toy")["id"]
    await asyncio.sleep(0.3)  # the poller is waiting now, for 30 s or a ring
    sent = time.monotonic()
    cmd = await ui.send_command(run_id, "pause")
    await wait_for(lambda: ui.command(cmd)["applied"], timeout=5.0)
    assert time.monotonic() - sent < 1.0
    await ui.send_command(run_id, "stop")
    await asyncio.wait_for(task, 10)


async def test_a_command_written_without_ringing_is_applied_within_the_poll(
        tmp_path, params_workspace):
    """A writer that does not ring (a hand-written INSERT, Datasette) is read once a second."""
    import sqlite3

    slow_workspace(params_workspace, 0.2)
    host, _, ui, task = await start(tmp_path, metric_spec(params_workspace, stop="max_rounds: 500"))
    run_id = ui.get_run("toy")["id"]
    with sqlite3.connect(tmp_path / "a.db", timeout=10) as raw:
        cmd = raw.execute("INSERT INTO commands (run_id, verb, created) VALUES (?, 'pause', ?)",
                          [run_id, time.time()]).lastrowid
    sent = time.monotonic()
    await wait_for(lambda: ui.command(cmd)["applied"], timeout=5.0)
    assert time.monotonic() - sent < 2.0
    assert ui.get_run("toy")["status"] == "paused"
    await ui.send_command(run_id, "stop")
    await asyncio.wait_for(task, 10)
