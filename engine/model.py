"""The nouns every part of the engine shares: mutations, evaluations, verdicts, and the
protocols a mutator, an evaluator and a worker implement.

A new kind of mutator, evaluator or worker is a new file that satisfies one of these
protocols; the loop never branches on kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Verdicts: what became of an experiment.
BASELINE = "baseline"
KEPT = "kept"
REVERTED = "reverted"
VETOED = "vetoed"
PINNED = "pinned"
INVALID = "invalid"
CRASHED = "crashed"
TIMEOUT = "timeout"
RETEST = "retest"
REEVALUATED = "reevaluated"  # the best version evaluated afresh (experiment kind "reeval")
INTERRUPTED = "interrupted"  # stopped or killed mid-evaluation; recorded, never re-counted
ABANDONED = "abandoned"  # proposed ahead from a parent that was replaced before a slot was free
RUNNING = "running"

#: Verdicts whose experiment became (or was) the best version.
ADVANCING = frozenset({BASELINE, KEPT, PINNED})
#: Verdicts that count as a failure for the "failures in a row" stop rule.
FAILURES = frozenset({INVALID, CRASHED, TIMEOUT})


class UserError(Exception):
    """A mistake a person can fix (bad spec, busy run, missing file). Shown as one line."""


class MutationError(Exception):
    """A mutator could not produce a usable mutation; the experiment is recorded as invalid."""


@dataclass
class Usage:
    """Tokens and money one mutation or judgement cost."""

    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cache_write: int = 0
    tokens_cache_read: int = 0
    cost_usd: float = 0.0
    #: The journal rows (engine/calls.py) of the model calls this adds up: the experiment
    #: that records this usage counts them, in the same transaction.
    calls: list[int] = field(default_factory=list, compare=False, repr=False)

    def add(self, other: Usage) -> None:
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.tokens_cache_write += other.tokens_cache_write
        self.tokens_cache_read += other.tokens_cache_read
        self.cost_usd += other.cost_usd
        self.calls.extend(other.calls)


@dataclass
class Mutation:
    """One small concrete change: new full contents for some target files."""

    description: str
    files: dict[str, str]
    rationale: str = ""
    #: Mutator-private data handed back in `Mutator.feedback` (e.g. which parameter moved).
    state: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)


@dataclass
class Proposal:
    """What a mutator sees when it proposes the next mutation."""

    run_name: str
    #: Target file contents of the best version, keyed by path relative to the workspace.
    best_files: dict[str, str]
    #: Earlier experiments, oldest first, as store rows (description, verdict, score, delta...).
    changelog: list[dict[str, Any]]
    #: Item results of the best version that failed (item, input, sample, evidence).
    failing_items: list[dict[str, Any]]
    #: Free-text guidance from the person steering, newest last.
    guidance: list[str]
    #: The score of the version being edited (the best, in greedy search).
    best_score: float | None = None
    #: The experiment id of the version being edited (`best_files` are its files).
    parent: int | None = None
    #: Whether that version is the run's best (beam and frontier search edit others too).
    parent_is_best: bool = True
    #: In beam and frontier search: earlier children of the same parent (changelog rows),
    #: oldest first — what its siblings tried.
    siblings: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ItemResult:
    """One yes/no answer: item × input × sample."""

    item: str
    passed: bool | None  # None: the judge gave no clean yes/no
    input: str = ""
    sample: int = 0
    evidence: str = ""
    #: How far a numeric check's value is from its bound, in units of the bound: positive
    #: when it passes (a search reads it to tell a near miss from a far one); None for yes/no
    #: answers with no measure.
    margin: float | None = None


@dataclass
class CommandResult:
    """What running one command on a worker produced."""

    exit_code: int | None
    output: str  # bounded tail of stdout+stderr
    timed_out: bool = False
    duration: float = 0.0
    truncated: bool = False


@dataclass
class Evaluation:
    """The score of one version, with everything needed to explain it."""

    status: str  # "ok", CRASHED or TIMEOUT
    score: float | None = None
    items: list[ItemResult] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    log_tail: str = ""
    duration: float = 0.0
    usage: Usage = field(default_factory=Usage)


@dataclass
class Decision:
    """A policy's verdict on a candidate, with the reason shown in the changelog."""

    verdict: str  # KEPT, REVERTED or RETEST
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


LineSink = Callable[[str], None]


class Session(Protocol):
    """A candidate's files placed on a worker, ready to run commands in."""

    async def run(
        self,
        command: str,
        *,
        timeout: float,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        on_line: LineSink | None = None,
    ) -> CommandResult: ...

    async def read_file(self, relpath: str) -> bytes | None: ...


class Worker(Protocol):
    """Somewhere an evaluation runs: a local slot or a remote one."""

    name: str

    def open(self, candidate: Path) -> AbstractAsyncContextManager[Session]: ...


class Evaluator(Protocol):
    """Scores the version in a candidate folder, running commands through a session."""

    #: "maximize" or "minimize".
    direction: str

    async def evaluate(self, session: Session, log: LineSink) -> Evaluation: ...


@dataclass
class Ahead:
    """A mutator's next proposal, made while the last one is evaluated on the assumption
    that it will not be kept (mutators that can: `propose_ahead`)."""

    mutation: Mutation
    #: Puts the mutator back as it was before (the proposal is not used).
    undo: Callable[[], None]


class Mutator(Protocol):
    """Proposes one mutation a round and learns from the verdicts.

    A mutator with a class attribute `reads_history = False` gets a Proposal without the
    changelog, failing items and guidance (they cost store queries every round). One with
    `propose_ahead(proposal, last) -> Ahead | None` (cheap, and whose feedback is the same
    for every verdict but KEPT) lets a fast loop propose and stage the next candidate while
    the last one is evaluated (engine/ahead.py). A mutator that reads the history (a model, a
    coding agent) is taken to be slow: the loop asks it for the next wave's mutations while
    the slots evaluate this one's (engine/stream.py)."""

    async def propose(self, proposal: Proposal) -> Mutation: ...

    def feedback(self, mutation: Mutation, verdict: str) -> None: ...

    # Optional: `observe(mutation, evaluations)` is given each candidate's evaluations once
    # it is decided (scores, items and their margins), for a search that learns from scores
    # and not from verdicts alone (the params mutator).
