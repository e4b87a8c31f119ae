"""The worker pool: groups, failure marking across a host's slots, backoff, and giving up."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import spec as specs
from engine.workers.faults import NoWorker, WorkerFailed
from engine.workers.local import LocalWorker
from engine.workers.pool import WorkerPool, build_workers


def local_pool(*groups: str) -> tuple[WorkerPool, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    workers = [LocalWorker(f"local:{i + 1}", g) for i, g in enumerate(groups)]
    pool = WorkerPool(workers, on_change=lambda s, c: changes.append((s.name, c)))
    return pool, changes


async def test_slots_are_handed_out_only_within_the_asked_group() -> None:
    pool, _ = local_pool("cheap", "full", "cheap")
    async with pool.slot("#1", group="cheap") as first, pool.slot("#2", group="cheap") as second:
        assert {first.name, second.name} == {"local:1", "local:3"}
        assert pool.busy == {first.name: "#1", second.name: "#2"}
        waiting = asyncio.create_task(pool.slot("#3", group="cheap").__aenter__())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the free `full` slot is not taken
    worker = await waiting
    assert worker.group == "cheap"


async def test_unknown_group_is_refused_at_once() -> None:
    pool, _ = local_pool("default")
    with pytest.raises(NoWorker, match="no worker in group 'gpu'"):
        async with pool.slot(group="gpu"):
            pass


async def test_a_failed_slot_is_down_with_backoff_and_up_again_after_a_success() -> None:
    pool, changes = local_pool("default", "default")
    pool.workers[0].backoff_s = 0.2
    with pytest.raises(WorkerFailed):
        async with pool.slot("#1") as worker:
            assert worker.name == "local:1"
            raise WorkerFailed("connection lost")
    state = pool.states["local:1"]
    assert state.status == "down" and state.reason == "connection lost" and state.failures == 1
    assert ("local:1", "down") in changes
    # While it backs off, it is not handed out, even to a caller that avoids the other slot.
    async with pool.slot("#2", avoid=["local:2"]) as worker:
        assert worker.name == "local:2"
    await asyncio.sleep(0.25)
    async with pool.slot("#3", avoid=["local:2"]) as worker:
        assert worker.name == "local:1"  # back from its backoff: this job is its probe
    assert pool.states["local:1"].status == "idle" and ("local:1", "up") in changes


async def test_a_down_slot_is_tried_again_only_after_its_backoff() -> None:
    pool, _ = local_pool("default")
    pool.workers[0].backoff_s = 0.3
    for failures in (1, 2):
        with pytest.raises(WorkerFailed):
            async with pool.slot():
                raise WorkerFailed("refused")
        assert pool.states["local:1"].failures == failures
    started = time.monotonic()
    async with pool.slot():
        waited = time.monotonic() - started
    assert 0.5 <= waited < 1.5  # 0.3 s doubled after the second failure


async def test_slots_of_one_host_go_down_together() -> None:
    workers = build_workers("run", [specs.SSHWorker(kind="ssh", host="gpu", slots=2),
                                    specs.SSHWorker(kind="ssh", host="other", slots=1)])
    pool = WorkerPool(workers)
    with pytest.raises(WorkerFailed):
        async with pool.slot() as worker:
            assert worker.name == "gpu:1"
            raise WorkerFailed("gpu: connection refused")
    assert {n: s.status for n, s in pool.states.items()} == {
        "gpu:1": "down", "gpu:2": "down", "other:1": "idle"}
    assert pool.states["gpu:2"].reason == "gpu: connection refused"


async def test_when_every_slot_is_down_for_good_callers_are_told_at_once() -> None:
    pool, _ = local_pool("default", "default")
    for _ in range(2):
        with pytest.raises(WorkerFailed):
            async with pool.slot():
                raise WorkerFailed("host key refused", permanent=True)
    with pytest.raises(NoWorker, match="every worker is down: local:1: host key refused"):
        async with pool.slot():
            pass
