"""The built-in offline mutator: tunes the parameters of one file, no network, no API key.

Each round it proposes new values for one or several parameters (engine/mutators/
paramsearch.py decides which: local steps of adaptive size, a model of what scored best, or
a fresh draw) and rewrites only those values in the file (engine/mutators/paramfile.py).
It learns from each candidate's verdict (`feedback`) and, once decided, from its score and
its checks' margins (`observe`).

A resumed run does not replay its proposals: the values its earlier experiments tried are
read back from the store (`bind_store`), remembered as tried, and the random stream is
seeded afresh from the seed and the number of experiments already made. On a discrete space
whose every combination has been tried, `finished` says so and the run stops with it.
"""

from __future__ import annotations

from typing import Any

from engine import spec as specs
from engine.model import (
    CRASHED,
    KEPT,
    PINNED,
    RETEST,
    REVERTED,
    TIMEOUT,
    VETOED,
    Ahead,
    Mutation,
    MutationError,
    Proposal,
)
from engine.mutators.paramfile import read_params, write_params
from engine.mutators.paramrank import soft_score
from engine.mutators.paramsearch import TRIED_MAX, Search, round_value

#: Earlier experiments read back when a run resumes (as many as are remembered as tried).
RESUME_MAX = TRIED_MAX
#: Verdicts of earlier candidates that say something about their values.
JUDGED = frozenset({KEPT, REVERTED, PINNED, VETOED, CRASHED, TIMEOUT})
#: Parameters named in a description before it says "+N more".
SHOWN = 3

__all__ = ["ParamsMutator", "coerce", "round_value"]


class ParamsMutator:
    #: It learns from verdicts alone: the changelog, failing items and guidance are not
    #: read, so the loop need not query them each round.
    reads_history = False
    #: Guidance (`g`, `autoresearch-tui guide`) is recorded but not read by this mutator.
    reads_guidance = False

    def __init__(self, config: specs.ParamsMutator, maximize: bool = True) -> None:
        self.config = config
        #: (`maximize`: the run's score is better higher; a metric's may be better lower.)
        self.search = Search(config.params, config.seed, maximize)
        #: Set when there is nothing left to propose: the run's stop reason.
        self.finished: str | None = None
        #: The last best file text read, and its parameter values.
        self._read: tuple[str, dict[str, Any]] | None = None

    # ---------------------------------------------------------------- resume

    def bind_store(self, store: Any, run_id: int) -> None:
        """Rebuild what earlier sessions of this run learned: their candidates' values
        (tried, and kept or not), and a random stream that does not repeat theirs."""
        rows = store.candidate_files(run_id, self.config.file, RESUME_MAX)
        if not rows:
            return
        names = list(self.config.params)
        for row in rows:
            try:
                values = self._values(read_params(row["content"], self.config.file, names))
            except MutationError:
                continue
            self.search.remember(self.search.space.key(values))
            if row["verdict"] in JUDGED:
                self.search.feedback(values, "", row["verdict"] in (KEPT, PINNED))
            if row.get("score") is not None:  # (margins are not stored: ranked by score)
                self.search.observe(values, "", row["score"], None)
        if self.config.seed is not None:  # (an unseeded run's stream is fresh anyway)
            self.search.rng.seed(f"{self.config.seed}/{len(rows)}")

    # ---------------------------------------------------------------- proposing

    async def propose(self, proposal: Proposal) -> Mutation:
        return self._propose(proposal)

    def propose_ahead(self, proposal: Proposal, last: Mutation) -> Ahead | None:
        """While `last` is evaluated: the proposal propose() will make once `last` has been
        given any verdict but KEPT (its feedback is the same for all of them), made now.
        The mutator is left in the state it would have then; Ahead.undo() puts back the
        state before, for the verdict's own feedback. None when no proposal can be made
        (propose() will say why, in its turn)."""
        saved, finished = self.search.snapshot(), self.finished
        self.feedback(last, REVERTED)
        try:
            mutation = self._propose(proposal)
        except MutationError:  # (the same error comes again from propose(), where handled)
            self.search.restore(saved)
            self.finished = finished
            return None
        key = self.search.space.key(mutation.state["values"])

        def undo() -> None:
            self.search.restore(saved, key)
            self.finished = finished

        return Ahead(mutation, undo)

    def _propose(self, proposal: Proposal) -> Mutation:
        cfg = self.config
        text = proposal.best_files[cfg.file]
        if self._read is None or self._read[0] != text:  # the best version changes rarely
            self._read = (text, self._values(read_params(text, cfg.file, list(cfg.params))))
        best = self._read[1]
        try:
            values, move = self.search.propose(best, best_score=proposal.best_score,
                                               follow_ranks=proposal.parent_is_best)
        except LookupError as exc:
            size = self.search.space.size
            self.finished = f"{exc} ({size} in all)" if size else str(exc)
            raise MutationError(self.finished) from None
        changed = {n: v for n, v in values.items() if v != best[n]}
        parts = [f"{n} {_show(best[n])} → {_show(v)}" for n, v in changed.items()]
        description = ", ".join(parts[:SHOWN]) + (
            f" (+{len(parts) - SHOWN} more)" if len(parts) > SHOWN else "")
        origin = self.search.origin(best) if proposal.parent_is_best else best
        rationale = _RATIONALE[move].format(n=len(changed), step=self.search.state.sigma)
        if origin != best and move != "wide":
            moved = [f"{n} {_show(v)}" for n, v in origin.items() if v != best[n]]
            rationale += (f"; from a version that tied the best and came nearer its bars "
                          f"({', '.join(moved[:SHOWN])}{' …' if len(moved) > SHOWN else ''})")
        return Mutation(
            description=description,
            files={cfg.file: write_params(text, cfg.file, changed)},
            rationale=rationale,
            state={"values": values, "move": move,
                   # (one parameter's move, as earlier versions named it)
                   "param": next(iter(changed)), "old": best[next(iter(changed))],
                   "new": changed[next(iter(changed))]})

    def _values(self, read: dict[str, Any]) -> dict[str, Any]:
        """The values read, as their declared types, within their ranges."""
        out = {}
        for name, param in self.config.params.items():
            value = coerce(param, read[name])
            out[name] = value if param.type == "choice" else round_value(param, value)
        return out

    # ---------------------------------------------------------------- learning

    def observe(self, mutation: Mutation, evaluations: list[Any]) -> None:
        """A decided candidate's evaluations: its score (the mean of those that scored)
        and its checks' margins rank it for the search (engine/mutators/paramrank.py)."""
        values = mutation.state.get("values")
        scored = [e for e in evaluations if e.status == "ok" and e.score is not None]
        if values is None or not scored:
            return
        score = sum(e.score for e in scored) / len(scored)
        soft = soft_score(i for e in scored for i in e.items)
        self.search.observe(values, mutation.state.get("move", ""), score, soft)

    def feedback(self, mutation: Mutation, verdict: str) -> None:
        values = mutation.state.get("values")
        if values is None or verdict == RETEST:  # (a retest's own verdict comes later)
            return
        self.search.feedback(values, mutation.state.get("move", ""), verdict == KEPT)
        if self.search.exhausted():
            size = self.search.space.size
            self.finished = f"every value combination was tried ({size} in all)"


_RATIONALE = {
    "local": "a step of {step:.2f} of the range from the best, {n} parameter(s)",
    "model": "where kept versions lie and reverted ones do not (a Parzen model), "
             "{n} parameter(s)",
    "wide": "a fresh draw over every range (a restart), {n} parameter(s)",
}


def coerce(param: specs.Param, value: Any) -> Any:
    """A value read from the file as the declared type (`1e-05` is a string to YAML)."""
    if param.type == "choice":
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MutationError(f"`{value!r}` is not a number") from None
    return int(round(number)) if param.type == "int" else number


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
