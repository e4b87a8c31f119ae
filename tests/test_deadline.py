"""within(): a command's timeout as asyncio.timeout behaves, with one timer per loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.workers.deadline import within


def test_a_block_past_its_deadline_raises_timeout_error_on_time():
    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            with within(0.2):
                await asyncio.sleep(10)
        return time.monotonic() - started

    assert 0.19 <= asyncio.run(main()) < 1.0


def test_a_block_that_ends_in_time_is_left_alone_and_so_is_the_task_afterwards():
    async def main() -> str:
        with within(0.1):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the deadline passes: nothing happens to the task now
        return "done"

    assert asyncio.run(main()) == "done"


def test_a_sooner_deadline_after_a_later_one_fires_first():
    async def block(seconds: float, log: list[tuple[float, str]]) -> None:
        try:
            with within(seconds):
                await asyncio.sleep(10)
        except TimeoutError:
            log.append((seconds, "timed out"))

    async def main() -> list[tuple[float, str]]:
        log: list[tuple[float, str]] = []
        slow = asyncio.create_task(block(0.6, log))
        await asyncio.sleep(0.01)
        fast = asyncio.create_task(block(0.1, log))
        await asyncio.gather(slow, fast)
        return log

    assert asyncio.run(main()) == [(0.1, "timed out"), (0.6, "timed out")]


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def main() -> None:
        async def inner() -> None:
            with within(5):
                await asyncio.sleep(10)

        task = asyncio.create_task(inner())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_none_means_no_limit_and_many_blocks_share_one_timer():
    async def main() -> int:
        with within(None):
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        for _ in range(500):
            with within(30):
                await asyncio.sleep(0)
        # 500 blocks, one timer: the loop's heap did not grow with them
        return len(loop._scheduled)  # type: ignore[attr-defined]

    assert asyncio.run(main()) <= 2
