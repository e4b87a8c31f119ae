"""What an evaluation leaves behind: processes it started that outlive it, a stop that lands
while it is being started, and what a killed engine leaves (its evaluations, its scratch)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from engine.store import Store
from engine.workers.local import run_local
from tests.conftest import REPO, cli_env, metric_spec, write
from tests.test_loop import git, make_repo, run_spec


def processes_with(word: str) -> list[int]:
    """Pids whose command line contains `word` (our own tests' unique sleep lengths)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
                state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if word.encode() in cmdline and state != b"Z":
                found.append(int(name))
    return found


def unique_sleep() -> str:
    """A sleep length no other process on the machine uses: `sleep 30.<random>`."""
    return f"30.{uuid.uuid4().int % 10**9:09d}"


async def test_evaluation_ends_when_its_process_exits_though_a_child_holds_stdout(tmp_path):
    length = unique_sleep()
    started = time.monotonic()
    result = await run_local(f"(sleep {length} &); echo METRIC loss=1", tmp_path, timeout=20)
    assert time.monotonic() - started < 3
    assert result.exit_code == 0 and not result.timed_out
    assert "METRIC loss=1" in result.output
    assert "left 1 process running" in result.output
    assert processes_with(length) == []


async def test_a_run_whose_evaluation_leaves_a_child_scores_it_not_timeout(
        tmp_path, params_workspace):
    length = unique_sleep()
    write(params_workspace / "score.sh", f"""
        (sleep {length} &)
        python score.py
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 3", command="sh score.sh")
    started = time.monotonic()
    store = await run_spec(tmp_path / "a.db", spec)
    assert time.monotonic() - started < 15
    rows = store.experiments(store.get_run("toy")["id"])
    assert len(rows) == 4 and not [r for r in rows if r["verdict"] in ("timeout", "crashed")]
    assert "left 1 process running" in rows[0]["log_tail"]
    assert processes_with(length) == []


async def test_a_stop_while_evaluations_are_being_started_leaves_no_child(tmp_path):
    """Cancel run_local at every moment of its start: no `sleep` may survive."""
    length = unique_sleep()
    for delay in [0, 0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01] * 3:
        task = asyncio.create_task(run_local(f"sleep {length} & sleep {length}", tmp_path,
                                             timeout=20))
        if delay:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    await asyncio.sleep(0.1)
    assert processes_with(length) == []


def _engine(db: Path, spec: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "run", str(spec),
                             "--headless"], env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _wait_for(what, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _evaluation_running(length: str) -> list[int]:
    """The evaluation's processes once its `sleep` runs: the shell shows the length in its
    command line before it forks the sleep, so the shell alone is not all of it yet."""
    pids = processes_with(length)
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"):
                return pids
        except OSError:
            continue  # (gone since)
    return []


def _scratch(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"autoresearch-{pid}-*"))


def test_sigkill_of_the_engine_kills_its_evaluation_and_removes_its_scratch(
        tmp_path, params_workspace):
    length = unique_sleep()
    spec = metric_spec(params_workspace, stop="max_rounds: 3",
                       command=f"'sleep {length}; python score.py'", timeout="60")
    db = tmp_path / "a.db"
    # 1. The watchdog: the evaluation dies with the engine.
    engine = _engine(db, spec)
    try:
        evaluation = _wait_for(lambda: _evaluation_running(length))
        assert _scratch(engine.pid)
    finally:
        engine.kill()
        engine.wait()
    _wait_for(lambda: not processes_with(length), timeout=5)
    _wait_for(lambda: not _scratch(engine.pid), timeout=5)
    assert evaluation
    # 2. The watchdog killed too: the next engine on the store cleans up after both.
    engine = _engine(db, spec)
    try:
        evaluation = _wait_for(lambda: _evaluation_running(length))
        watchdogs = [p for p in processes_with("engine.watchdog")
                     if f"autoresearch-{engine.pid}-".encode() in
                     Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(watchdogs) == 1
        os.kill(watchdogs[0], signal.SIGKILL)
    finally:
        engine.kill()
        engine.wait()
    time.sleep(0.3)
    assert processes_with(length) == evaluation  # nobody cleaned up yet
    assert _scratch(engine.pid)
    second = _engine(db, spec)

    def notes() -> list[str]:
        store = Store(db, readonly=True)
        try:
            return [e["line"] for e in store.events(None, limit=500) if "cleaned up" in e["line"]]
        finally:
            store.close()

    try:
        _wait_for(lambda: not set(evaluation) & set(processes_with(length)), timeout=10)
        _wait_for(lambda: not _scratch(engine.pid), timeout=5)
        # The note is committed with the engine's next batch of rows: wait for it before
        # the kill (a kill a moment after the clean-up could otherwise take it along).
        _wait_for(notes, timeout=10)
    finally:
        second.kill()  # (a clean stop would wait for its baseline's 30 s)
        second.wait(20)
    assert f"engine {engine.pid}" in notes()[0]
    _wait_for(lambda: not processes_with(length), timeout=5)


@pytest.mark.parametrize("vandal", ["delete", "overwrite"])
async def test_a_baseline_that_changes_the_targets_commits_the_recorded_version(
        tmp_path, params_workspace, vandal):
    """Nothing sandboxes an evaluation: one that deletes or overwrites the target on disk
    during the baseline must not get that into the branch's first commit."""
    target = params_workspace / "params.yaml"
    original = target.read_text()
    flag = tmp_path / "vandalized"
    act = f"rm -f {target}" if vandal == "delete" else f"echo 'x: 99' > {target}"
    write(params_workspace / "score.sh", f"""
        if [ ! -e {flag} ]; then touch {flag}; {act}; fi
        python score.py
    """)
    make_repo(params_workspace)
    spec = metric_spec(params_workspace, stop="max_rounds: 2", command="sh score.sh")
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("toy")
    first = git(params_workspace, "log", "--format=%H", "--grep=: baseline",
                "autoresearch/toy").split()[0]
    assert git(params_workspace, "show", f"{first}:params.yaml") == original
    assert git(params_workspace, "status", "--porcelain", "params.yaml") == ""
    # ... and the run resumes.
    more = metric_spec(params_workspace, stop="max_rounds: 4", command="sh score.sh")
    store = await run_spec(tmp_path / "a.db", more)
    assert store.get_run(run["id"])["status"] == "done"
