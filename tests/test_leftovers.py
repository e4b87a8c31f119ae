"""What an evaluation leaves behind: processes it started that outlive it, a stop that lands
while it is being started, and what a killed engine leaves (its evaluations, its scratch)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

from engine.workers.local import run_local
from tests.conftest import metric_spec, write
from tests.test_loop import run_spec


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
