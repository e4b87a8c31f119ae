"""Child processes are awaited through pidfds on Python 3.11 (engine/workers/childwatch.py)."""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings

import pytest

from engine.workers.childwatch import PidfdWatcher, watch_children_with_pidfds
from engine.workers.local import run_local

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12) or sys.platform != "linux",
                                reason="3.12+ watches children with pidfds by itself")


@pytest.fixture
def pidfd_watcher():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        before = getattr(policy, "_watcher", None)
        watch_children_with_pidfds()
        yield policy._watcher
        policy._watcher = before


def test_installed_once_and_kept(pidfd_watcher):
    assert isinstance(pidfd_watcher, PidfdWatcher)
    watch_children_with_pidfds()
    assert asyncio.get_event_loop_policy()._watcher is pidfd_watcher


def test_exit_codes_and_output_without_a_thread_per_child(pidfd_watcher, tmp_path):
    async def main() -> list:
        threads = threading.active_count()
        slow = asyncio.create_task(run_local("sleep 0.3; exit 3", tmp_path, timeout=10))
        await asyncio.sleep(0.1)
        during = threading.active_count()  # the default 3.11 watcher has a thread waiting now
        results = await asyncio.gather(slow, run_local("echo hi", tmp_path, timeout=10),
                                       run_local("kill -9 $$", tmp_path, timeout=10))
        return [threads, during, *results]

    threads, during, slow, echo, killed = asyncio.run(main())
    assert during == threads
    assert (slow.exit_code, echo.exit_code, echo.output.strip()) == (3, 0, "hi")
    assert killed.exit_code == -9


def test_works_for_any_loop_in_any_thread(pidfd_watcher, tmp_path):
    """The TUI's loop, a test's loop and a thread's loop each wait for their own children."""
    codes: list[int | None] = []

    def in_thread() -> None:
        codes.append(asyncio.run(run_local("exit 5", tmp_path, timeout=10)).exit_code)

    worker = threading.Thread(target=in_thread)
    worker.start()
    codes.append(asyncio.run(run_local("exit 4", tmp_path, timeout=10)).exit_code)
    worker.join(10)
    assert sorted(codes) == [4, 5]


def test_timeout_still_kills_the_group(pidfd_watcher, tmp_path):
    result = asyncio.run(run_local("sleep 30 & sleep 30", tmp_path, timeout=0.3))
    assert result.timed_out and result.duration < 5
