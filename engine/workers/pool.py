"""A pool of worker slots handed out to a run's evaluations, one at a time per slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine import spec as specs
from engine.model import Worker
from engine.workers.local import LocalWorker


def build_workers(run_name: str, configs: list[specs.Worker]) -> list[Worker]:
    """One Worker object per slot, named `local:1`, `gpu-box:2`..."""
    workers: list[Worker] = []
    for config in configs:
        for slot in range(1, config.slots + 1):
            if isinstance(config, specs.LocalWorker):
                workers.append(LocalWorker(f"local:{len(workers) + 1}", config.group))
            else:
                from engine.workers.ssh import SSHWorker  # asyncssh only when needed

                workers.append(SSHWorker(config, slot))
    return workers


class WorkerPool:
    """Hands out free slots; waiting callers queue in order."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self._free: asyncio.Queue[Worker] = asyncio.Queue()
        for worker in workers:
            self._free.put_nowait(worker)
        #: Slot name → what it is running now (for the UI's worker lanes).
        self.busy: dict[str, str] = {}

    @property
    def size(self) -> int:
        return len(self.workers)

    @asynccontextmanager
    async def slot(self, label: str = "") -> AsyncIterator[Worker]:
        worker = await self._free.get()
        self.busy[worker.name] = label
        try:
            yield worker
        finally:
            self.busy.pop(worker.name, None)
            self._free.put_nowait(worker)

    async def close(self) -> None:
        for worker in self.workers:
            close = getattr(worker, "close", None)
            if close is not None:
                await close()
