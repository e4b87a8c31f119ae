"""Proposing the next candidate while the current one is evaluated (cheap mutators).

Most candidates are reverted, and a reverted candidate leaves the best version as it was:
so while one is evaluated, the loop can already propose the next one as if it will be
reverted, and stage it in the slot's spare folder. If it is reverted, the next round starts
with that done (when evaluations take milliseconds, proposing and staging are a good part
of a round: bench/engine_overhead.py). If it is kept, or the best version moved meanwhile
(a veto, a pin), the proposal is undone and made again. The mutator's state and random draws
are what they would have been: ahead or not, a seeded run makes the same proposals
(tests/test_loop.py, tests/test_params.py).

Only for mutators that can (`propose_ahead`: cheap, history-free, with the same feedback for
every verdict but a keep: the params mutator), single-candidate waves on one slot, and no
retests or re-evaluations to come first. Slow mutators (a model, a coding agent) propose
ahead through engine/stream.py instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.context import Candidate
from engine.model import CRASHED, KEPT, RETEST, Ahead, Mutation, MutationError, Mutator, Proposal
from engine.versions import Version, Versions
from engine.workspace import PathRefused


@dataclass
class _Pending:
    """A proposal made ahead, and what it assumed."""

    ahead: Ahead
    #: The candidate being evaluated when it was made: it assumed that one is not kept.
    last: Candidate
    #: The best version it was made from (replaced, never changed in place, when it moves).
    best: Version
    #: Its verdict came and was not a keep: the mutator's feedback for it is given.
    confirmed: bool = False


class ProposingAhead:
    """One run's proposal made ahead, if any."""

    def __init__(self, mutator: Mutator, versions: Versions,
                 proposal: Callable[[Version], Proposal],
                 check: Callable[[Mutation, dict[str, str]], None]) -> None:
        self.mutator = mutator
        self.versions = versions
        self._proposal = proposal
        self._check = check
        self.pending: _Pending | None = None

    def think(self, cand: Candidate) -> dict[str, str] | None:
        """At `cand`'s first pause: propose the next candidate; the files to stage for it
        (None when there is none to make now)."""
        best = self.versions.best
        propose_ahead = getattr(self.mutator, "propose_ahead", None)
        if (propose_ahead is None or getattr(self.mutator, "reads_history", True)
                or self.pending is not None or best is None):
            return None
        ahead = propose_ahead(self._proposal(best), cand.mutation)
        if ahead is None:
            return None
        try:
            self._check(ahead.mutation, best.files)
        except (MutationError, PathRefused):
            ahead.undo()  # proposed again in its turn, and recorded as invalid then
            return None
        self.pending = _Pending(ahead, cand, best)
        return {**best.files, **ahead.mutation.files}

    def settle(self, cand: Candidate, retests_waiting: bool) -> bool:
        """`cand`'s verdict is in: True when a proposal made ahead on it stands (its
        feedback was given then)."""
        pending = self.pending
        if pending is None or pending.last is not cand:
            return False
        if cand.verdict not in (KEPT, RETEST) and not retests_waiting and self._holds(pending):
            pending.confirmed = True
            return True
        pending.ahead.undo()
        self.pending = None
        return False

    def take(self) -> Ahead | None:
        """The proposal made ahead, if it stands; else the mutator is put back as if it had
        never been made."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        if pending.confirmed and self._holds(pending):
            return pending.ahead
        pending.ahead.undo()
        if pending.confirmed:  # its verdict's feedback was the one given ahead: again
            self.mutator.feedback(pending.last.mutation, pending.last.verdict or CRASHED)
        return None

    def _holds(self, pending: _Pending) -> bool:
        return self.versions.best is pending.best
