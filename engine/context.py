"""What a run loop's collaborators share: the run's identity, its steering switches, the
experiments in flight, and the one way to pause a run for a person.

The loop (engine/loop.py) builds one `RunContext` and hands it to each collaborator —
the proposer, the scorer, the waves, the rechecks, the steering — so none of them needs the
loop itself (no import circle, no private members reached into). A collaborator that needs
another gets it in its constructor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine import spec as specs
from engine.ledger import Ledger
from engine.model import Evaluation, Mutation, Usage
from engine.store import Store
from engine.workspace import Workspace


@dataclass(eq=False)
class Candidate:
    """One experiment in flight: a mutation of its parent version, being scored."""

    exp_id: int
    mutation: Mutation
    #: The experiment id of the version it was proposed from.
    parent: int
    evals: list[Evaluation] = field(default_factory=list)
    verdict: str | None = None
    reason: str = ""
    worker: str = ""
    #: The policy's evidence for the verdict (stored as the experiment's decision_json).
    details: dict[str, Any] = field(default_factory=dict)
    #: Retests of this mutation before this one (0: a fresh proposal).
    attempt: int = 0
    #: Its score in the screen tier, in a tiered run.
    screen_score: float | None = None
    #: The parent version's files (the candidate's files are these plus the mutation's).
    parent_files: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> dict[str, str]:
        return {**self.parent_files, **self.mutation.files}


@dataclass
class Controls:
    """The steering switches the host sets from commands, read by every collaborator."""

    paused: bool = False
    stopping: bool = False
    #: Experiments vetoed while in flight (their verdict is `vetoed` when they land).
    vetoed: set[int] = field(default_factory=set)


async def _no_turn() -> None:
    """A run outside a library: every round is its own to take."""


@dataclass(eq=False)
class RunContext:
    """One run's shared pieces (built by the loop, read by its collaborators)."""

    spec: specs.Spec
    store: Store
    run_id: int
    workspace: Workspace
    ledger: Ledger
    notify: Callable[[], None]
    controls: Controls = field(default_factory=Controls)
    #: Experiments started and not yet decided, by id.
    in_flight: dict[int, Candidate] = field(default_factory=dict)
    #: A problem a person must see (full disk, a service down...); None when all is well.
    alert: str | None = None
    #: Wakes a paused loop (set by the loop).
    wake: Callable[[], None] = lambda: None
    #: The best version's experiment id (set by the loop: its versions answer).
    best: Callable[[], int | None] = lambda: None
    #: Writes the workers' rows now (set by the loop: its scorer keeps them).
    flush_workers: Callable[[], None] = lambda: None
    #: Awaits a stop may cancel now: evaluations, and model calls (engine/stopping.py).
    cancellable: int = 0
    #: Waits for the run's next round: a library's scheduler sets it (engine/scheduler.py).
    turn: Callable[[], Awaitable[None]] = _no_turn
    #: Why the run's library stops it (its budget), or None (engine/scheduler.py).
    library_stop: Callable[[], str | None] = lambda: None
    #: The next baseline's description when it is not the first (engine/handedit.py).
    baseline_note: str = ""

    # Read by engine/outage.py, engine/target.py and engine/storage.py.
    @property
    def records(self) -> Any:
        return self.ledger.records

    def flush_events(self) -> None:
        self.ledger.flush_events()

    @property
    def paused(self) -> bool:
        return self.controls.paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self.controls.paused = value

    @property
    def stopping(self) -> bool:
        return self.controls.stopping

    @property
    def best_id(self) -> int | None:
        return self.best()

    @property
    def in_library(self) -> bool:
        """Its rounds are turns a library's scheduler gives (engine/scheduler.py)."""
        return self.turn is not _no_turn

    @property
    def target(self) -> float | None:
        return self.spec.target_score

    @property
    def direction(self) -> str:
        return self.spec.direction

    def log(self, line: str, *, level: str = "info", source: str = "engine",
            exp_id: int | None = None) -> None:
        self.ledger.log(line, level=level, source=source, exp_id=exp_id)

    def pause_for_error(self, message: str) -> None:
        """A service the run needs failed repeatedly: pause this run (others go on), say why."""
        self.controls.paused = True
        self.store.update_run(self.run_id, status="paused", stop_reason=f"paused: {message}")
        self.log(f"paused: {message}", level="error")
        self.ledger.flush_events()
        self.notify()


def usage_of(evals: list[Evaluation], extra: Usage | None = None) -> Usage:
    """The tokens and money of some evaluations (and of a mutation, if given)."""
    total = Usage()
    for e in evals:
        total.add(e.usage)
    if extra is not None:
        total.add(extra)
    return total
