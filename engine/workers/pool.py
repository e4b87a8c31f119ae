"""A pool of worker slots handed out to a run's evaluations, one evaluation per slot at a time.

Slots can be asked for by group (a tier runs on one group only, so its scores compare). A
slot whose worker fails is marked down together with every slot of the same host (its
`fault_domain`) and is handed out again only after a backoff that doubles with each failure;
the first evaluation given to it afterwards is the probe that brings it back up.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine import spec as specs
from engine.model import Worker
from engine.workers.faults import NoWorker, WorkerFailed
from engine.workers.local import LocalWorker

#: Workers one evaluation may be tried on before it is recorded as crashed.
MAX_TRIES = 3
#: Default first backoff of a failed worker (SSH workers take theirs from the spec).
BACKOFF_S = 5.0
#: Longest backoff, and the backoff of a permanent fault (refused host key, bad host name).
BACKOFF_MAX_S = 300.0


def build_workers(run_name: str, configs: list[specs.Worker]) -> list[Worker]:
    """One Worker object per slot, named `local:1`, `gpu-box:2`...; slots of one SSH host
    share its connections."""
    workers: list[Worker] = []
    names: set[str] = set()
    for config in configs:
        host = None
        if isinstance(config, specs.SlurmWorker):
            from engine.workers.slurm import SlurmCluster, SlurmWorker  # asyncssh when needed

            cluster = SlurmCluster(config, run_name)
            while any(n.startswith(f"{cluster.label}:") for n in names):
                cluster.label += "+"
            for slot in range(1, config.slots + 1):
                workers.append(SlurmWorker(config, slot, cluster))
                names.add(workers[-1].name)
            continue
        if isinstance(config, specs.SSHWorker):
            from engine.workers.ssh import SSHHost  # asyncssh only when needed

            host = SSHHost(config)
            while any(n.startswith(f"{host.label}:") for n in names):
                host.label += "+"  # the same host listed twice: keep slot names apart
        for slot in range(1, config.slots + 1):
            if host is None:
                worker: Worker = LocalWorker(f"local:{len(workers) + 1}", config.group)
            else:
                from engine.workers.ssh import SSHWorker

                worker = SSHWorker(config, slot, host=host)
            names.add(worker.name)
            workers.append(worker)
    return workers


@dataclass
class WorkerState:
    """What a slot is doing, for the UI's worker lanes and the pool's choices."""

    name: str
    group: str
    up: bool = True
    #: What it runs now (`#12`), empty when idle.
    job: str = ""
    #: Why it is down.
    reason: str = ""
    failures: int = 0
    #: When (time.monotonic) a down slot may be tried again.
    retry_at: float = 0.0
    permanent: bool = False
    #: What it waits for outside the evaluation (a SLURM queue: "queued 2m14s, reason
    #: Resources"), and the batch system's job (or step) id it is on.
    queue: str = ""
    job_id: str = ""

    @property
    def status(self) -> str:
        return "down" if not self.up else "busy" if self.job else "idle"

    @property
    def retry_in(self) -> float:
        return max(0.0, self.retry_at - time.monotonic())


#: Called with a slot's state and what changed: "busy", "idle", "down" or "up".
ChangeSink = Callable[[WorkerState, str], None]


class WorkerPool:
    """Hands out free slots, preferring healthy ones and ones an evaluation has not failed on."""

    def __init__(self, workers: list[Worker], on_change: ChangeSink | None = None,
                 max_tries: int = MAX_TRIES) -> None:
        self.workers = workers
        self.on_change = on_change
        self.max_tries = max_tries
        self.states = {w.name: WorkerState(w.name, getattr(w, "group", "default"))
                       for w in workers}
        #: Slot name → what it is running now (for the UI's worker lanes).
        self.busy: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._warming: asyncio.Task[None] | None = None
        for worker in workers:  # slots that wait in a queue say so (slurm.py)
            if hasattr(worker, "on_state"):
                worker.on_state = functools.partial(self._queued, worker.name)

    def _queued(self, name: str, queue: str, job_id: str) -> None:
        state = self.states[name]
        if (state.queue, state.job_id) != (queue, job_id):
            state.queue, state.job_id = queue, job_id
            self._emit(state, "queue")

    @property
    def size(self) -> int:
        return len(self.workers)

    def groups(self) -> list[str]:
        return list(dict.fromkeys(s.group for s in self.states.values()))

    def slot(self, label: str = "", *, group: str | None = None,
             avoid: Iterable[str] = ()) -> _Slot:
        """A free slot (of `group`) for the body; a WorkerFailed leaving the body marks it down."""
        return _Slot(self, label, group, set(avoid))

    async def _acquire(self, group: str | None, avoid: set[str]) -> Worker:
        while True:
            worker = self._pick(group, avoid)
            if worker is not None:
                return worker
            members = [s for s in self.states.values() if group is None or s.group == group]
            if not members:
                raise NoWorker(f"no worker in group {group!r}")
            down = [s for s in members if not s.up]
            if len(down) == len(members) and all(s.permanent for s in down):
                raise NoWorker("every worker is down: " + "; ".join(
                    f"{s.name}: {s.reason}" for s in down[:3]))
            waits = [s.retry_in for s in down if not s.job]
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), min(waits) + 0.01 if waits else None)
            except TimeoutError:
                pass

    def _pick(self, group: str | None, avoid: set[str]) -> Worker | None:
        """The first free slot in order, preferring healthy ones not to avoid (asked before
        every evaluation: the first such slot ends the search)."""
        now = time.monotonic()
        best: tuple[bool, bool, int] | None = None
        picked = None
        for i, worker in enumerate(self.workers):
            state = self.states[worker.name]
            if state.job or group is not None and state.group != group or not (
                    state.up or now >= state.retry_at):
                continue
            rank = (worker.name in avoid, not state.up, i)
            if rank[:2] == (False, False):
                return worker
            if best is None or rank < best:
                best, picked = rank, worker
        return picked

    def _domain(self, worker: Worker) -> list[WorkerState]:
        domain = getattr(worker, "fault_domain", worker.name)
        return [self.states[w.name] for w in self.workers
                if getattr(w, "fault_domain", w.name) == domain]

    def _down(self, worker: Worker, exc: WorkerFailed) -> None:
        failures = self.states[worker.name].failures + 1
        base = getattr(worker, "backoff_s", BACKOFF_S)
        backoff = BACKOFF_MAX_S if exc.permanent else min(base * 2 ** (failures - 1), BACKOFF_MAX_S)
        for state in self._domain(worker):
            was_up = state.up
            state.up, state.reason, state.permanent = False, exc.reason, exc.permanent
            state.failures = failures
            state.retry_at = time.monotonic() + backoff
            if was_up or state.name == worker.name:
                self._emit(state, "down")

    def _up(self, worker: Worker) -> None:
        for state in self._domain(worker):
            if not state.up:
                state.up, state.reason, state.failures, state.permanent = True, "", 0, False
                self._emit(state, "up")

    def _emit(self, state: WorkerState, change: str) -> None:
        if self.on_change is not None:
            self.on_change(state, change)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def warm_up(self) -> None:
        """Connect every remote worker in the background (once): the first wave finds its
        connections open, and an unreachable host is marked down before work is sent to it."""
        if self._warming is None:
            self._warming = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        async def one(worker: Worker) -> None:
            try:
                await worker.warm_up()
            except WorkerFailed as exc:
                if self.states[worker.name].up:
                    self._down(worker, exc)
                    self._wake()

        await asyncio.gather(*(one(w) for w in self.workers if hasattr(w, "warm_up")))

    async def close(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        for state in self.states.values():
            self._emit(state, "stopped")
        closed: set[int] = set()
        for worker in self.workers:
            close = getattr(worker, "close", None)
            if close is not None and id(getattr(worker, "host", worker)) not in closed:
                closed.add(id(getattr(worker, "host", worker)))
                await close()


class _Slot:
    """`async with pool.slot(...) as worker`: taken on entry, given back on exit (a class,
    not a generator: it is entered before every evaluation)."""

    def __init__(self, pool: WorkerPool, label: str, group: str | None,
                 avoid: set[str]) -> None:
        self.pool, self.label, self.group, self.avoid = pool, label, group, avoid
        self.worker: Worker | None = None

    async def __aenter__(self) -> Worker:
        pool = self.pool
        worker = self.worker = await pool._acquire(self.group, self.avoid)
        state = pool.states[worker.name]
        pool.busy[worker.name] = state.job = self.label or "busy"
        pool._emit(state, "busy")
        return worker

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        pool, worker = self.pool, self.worker
        assert worker is not None
        if isinstance(exc, WorkerFailed):
            pool._down(worker, exc)
        elif exc is None:
            pool._up(worker)
        pool.busy.pop(worker.name, None)
        state = pool.states[worker.name]
        state.job = ""
        pool._emit(state, "idle")
        pool._wake()
