"""Worker faults against real sshd processes: a dropped connection, a killed remote command,
an unreachable host, a silent hang, and a stop in the middle of a remote job.

A fault of the worker is retried elsewhere and never recorded twice; a fault of the
command is the candidate's verdict.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.loop import RunLoop
from tests.sshd import SSHLab, make_spec, open_lab, process_alive, run_loop, saw_line, until

PY = sys.executable


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SSHLab]:
    yield from open_lab(tmp_path, monkeypatch)


def events(loop: RunLoop) -> list[dict]:
    return loop.store.events(loop.run_id, limit=100_000)


async def test_dropped_connection_retries_the_experiment_on_another_worker_once(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    a, _ = lab.host("a"), lab.host("b")
    spec = make_spec(params_workspace, "drop", command=f"echo started; sleep 1; {PY} score.py",
                     workers=[lab.worker("a"), lab.worker("b")], parallel=2,
                     stop={"max_rounds": 2})

    async def during(loop: RunLoop) -> None:
        await until(lambda: saw_line(loop, "started"), what="the baseline to start on a")
        assert loop.pool.busy == {"a:1": "#1"}
        assert a.kill_connections() >= 1  # the worker's sshd dies mid-run

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    rows = loop.store.experiments(loop.run_id)
    baseline = [r for r in rows if r["kind"] == "baseline"]
    assert len(baseline) == 1 and baseline[0]["verdict"] == "baseline"
    assert baseline[0]["worker"] == "b:1" and baseline[0]["score"] is not None
    lines = [(e["level"], e["source"], e["line"]) for e in events(loop)]
    assert ("warning", "a:1", "worker a:1 down: a: connection lost (next try in 0s)") in lines
    assert any("#1: worker a:1 failed (a: connection lost); trying another worker" in line
               for _, _, line in lines)
    # After its backoff, a:1 takes work again and is marked up.
    assert ("warning", "a:1", "worker a:1 up again") in lines
    assert {r["worker"] for r in rows if r["kind"] == "candidate"} == {"a:1", "b:1"}
    assert lab.remote_folders() == []  # the abandoned job's folder went on reconnection


async def test_killed_remote_command_is_a_crash_verdict_recorded_once(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    box = lab.host("box")
    # The metric is printed first; the candidate's process then dies by SIGKILL (as an
    # out-of-memory kill would) while the connection stays healthy.
    spec = make_spec(params_workspace, "oom", command=f"{PY} score.py; echo started; sleep 7.25",
                     workers=[lab.worker("box")], stop={"max_rounds": 1}, timeout_s=30)

    async def during(loop: RunLoop) -> None:
        await until(lambda: box.processes("sleep 7.25"), timeout=30, what="the remote sleep")
        for pid in box.processes("sleep 7.25"):
            os.kill(pid, signal.SIGKILL)

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    run = loop.store.get_run(loop.run_id)
    assert run["status"] == "failed" and "command exited 137" in run["stop_reason"]
    assert len(loop.store.experiments(loop.run_id)) == 1  # the baseline, once, crashed
    assert not any("down" in e["line"] for e in events(loop))


async def test_unreachable_host_is_marked_down_and_the_others_do_the_work(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    dead = lab.host("dead", start=False)  # a port with no sshd behind it
    lab.host("live")
    spec = make_spec(params_workspace, "unreachable", command=f"{PY} score.py",
                     workers=[lab.worker("dead"), lab.worker("live")], parallel=2,
                     stop={"max_rounds": 4})
    seen_down: list[dict] = []

    async def during(loop: RunLoop) -> None:
        def down() -> bool:
            seen_down[:] = [w for w in loop.store.workers(loop.run_id) if w["status"] == "down"]
            return bool(seen_down)

        await until(down, what="the dead host to be marked down in the store")

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    assert seen_down[0]["name"] == "dead:1"
    assert f"connection refused by 127.0.0.1:{dead.port}" in seen_down[0]["reason"]
    rows = loop.store.experiments(loop.run_id)
    assert len(rows) == 5 and all(r["score"] is not None for r in rows)
    assert {r["worker"] for r in rows} == {"live:1"}
    assert len({r["round"] for r in rows}) == 5  # nothing counted twice


async def test_with_every_host_unreachable_the_baseline_fails_after_bounded_tries(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    lab.host("dead", start=False)
    spec = make_spec(params_workspace, "nowhere", command=f"{PY} score.py",
                     workers=[lab.worker("dead")])
    started = time.monotonic()
    loop = await run_loop(spec, tmp_path / "store.db", timeout=30)
    assert time.monotonic() - started < 10
    run = loop.store.get_run(loop.run_id)
    assert run["status"] == "failed"
    assert run["stop_reason"].startswith(
        "baseline failed: no worker could finish the evaluation after 3 tries: dead:1: "
        "dead: connection refused")
    failures = [e for e in events(loop) if "worker dead:1 failed" in e["line"]]
    assert len(failures) == 3


async def test_heartbeat_catches_a_silent_hang(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    frozen, _ = lab.host("a"), lab.host("b")
    spec = make_spec(params_workspace, "hang", command=f"echo started; sleep 0.5; {PY} score.py",
                     workers=[lab.worker("a", heartbeat_s=0.5), lab.worker("b")],
                     stop={"max_rounds": 1}, timeout_s=120)
    froze_at: list[float] = []

    async def during(loop: RunLoop) -> None:
        await until(lambda: saw_line(loop, "started"), what="the baseline to start on a")
        frozen.freeze()  # the host stops answering without closing anything
        froze_at.append(time.monotonic())
        await until(lambda: loop.store.experiment(1)["verdict"] != "running", timeout=30,
                    what="the baseline to finish elsewhere")
        froze_at.append(time.monotonic())

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    baseline = loop.store.experiment(1)
    assert baseline["verdict"] == "baseline" and baseline["worker"] == "b:1"
    assert froze_at[1] - froze_at[0] < 10  # not the 120 s evaluation timeout
    assert any("worker a:1 down: a: " in e["line"] for e in events(loop))


async def test_stopping_a_run_kills_its_remote_jobs(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    box = lab.host("box")
    slow = tmp_path / "slow"  # candidates (not the baseline) hang once this exists
    spec = make_spec(params_workspace, "stop", workers=[lab.worker("box")], timeout_s=600,
                     command=f"{PY} score.py; if [ -f {slow} ]; then sleep 301; fi")
    remote: list[int] = []

    async def during(loop: RunLoop) -> None:
        await until(lambda: loop.best_id is not None, what="the baseline")
        slow.touch()
        await until(lambda: box.processes("sleep 301"), what="the remote job")
        remote.extend(box.processes("sleep 301"))
        loop.stopping = True  # what `stop` does
        loop.wake()
        loop.cancel_wave()

    loop = await run_loop(spec, tmp_path / "store.db", during=during, timeout=20)
    assert loop.store.get_run(loop.run_id)["status"] == "stopped"
    assert [r["verdict"] for r in loop.store.experiments(loop.run_id)] == ["baseline",
                                                                          "interrupted"]
    await until(lambda: not any(process_alive(p) for p in remote), timeout=10,
                what="the remote job to be killed")
    assert lab.remote_folders() == []
