"""The built-in offline mutator: move one parameter a round.

Numeric parameters take a random step whose size adapts per parameter (it grows after a
keep, shrinks after a revert, as in a (1+1) evolution strategy); log-scale parameters step in
log space; categorical ones switch to another value. No network, no API key.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from engine import spec as specs
from engine.model import KEPT, REVERTED, Ahead, Mutation, MutationError, Proposal
from engine.mutators.paramfile import read_params, write_param

INITIAL_STEP = 0.25  # fraction of the range (or log-range)
MIN_STEP, MAX_STEP = 0.02, 0.6
GROW, SHRINK = 1.6, 0.85
TRIES = 30


def _round_sig(value: float, digits: int = 4) -> float:
    if value == 0:
        return 0.0
    return round(value, -int(math.floor(math.log10(abs(value)))) + digits - 1)


class ParamsMutator:
    #: It moves parameters by its own step sizes: the changelog, failing items and guidance
    #: are not read, so the loop need not query them each round.
    reads_history = False
    #: Guidance (`g`, `autoresearch-tui guide`) is recorded but not read by this mutator.
    reads_guidance = False

    def __init__(self, config: specs.ParamsMutator) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.steps = {name: INITIAL_STEP for name in config.params}
        #: Per-parameter weight: parameters whose moves got kept are tried more often.
        self.weights = {name: 1.0 for name in config.params}
        self._names = list(config.params)
        self._cum_weights = self._accumulate()
        self.tried: set[tuple[str, Any, Any]] = set()
        #: The last best file text read, and its parameter values.
        self._read: tuple[str, dict[str, Any]] | None = None

    def _step(self, name: str, param: specs.Param, old: Any, reach: float = 1.0) -> Any:
        if param.type == "choice":
            options = [v for v in param.values or [] if v != old]
            return self.rng.choice(options)
        lo, hi = float(param.min), float(param.max)  # type: ignore[arg-type]
        step = min(self.steps[name] * reach, 1.0) * self.rng.choice((-1, 1)) * (
            0.5 + self.rng.random())
        current = min(max(float(old), lo), hi)
        if param.scale == "log":
            span = math.log(hi) - math.log(lo)
            new = math.exp(min(max(math.log(current) + step * span, math.log(lo)), math.log(hi)))
        else:
            new = min(max(current + step * (hi - lo), lo), hi)
        if param.type == "int":
            new_int = int(round(new))
            if new_int == int(old):
                new_int += 1 if step > 0 else -1
            return int(min(max(new_int, lo), hi))
        return _round_sig(new)

    async def propose(self, proposal: Proposal) -> Mutation:
        return self._propose(proposal)

    def propose_ahead(self, proposal: Proposal, last: Mutation) -> Ahead | None:
        """While `last` is evaluated: the proposal propose() will make once `last` has been
        given any verdict but KEPT (its feedback is the same for all of them), made now.
        The mutator is left in the state it would have then; Ahead.undo() puts back the
        state before, for the verdict's own feedback. None when no proposal can be made
        (propose() will say why, in its turn)."""
        saved = (self.rng.getstate(), dict(self.steps), dict(self.weights), self._cum_weights)

        def undo() -> None:
            state, self.steps, self.weights, self._cum_weights = saved
            self.rng.setstate(state)

        self.feedback(last, REVERTED)
        try:
            mutation = self._propose(proposal)
        except Exception:  # (the same error comes again from propose(), where it is handled)
            undo()
            return None
        tried = (mutation.state["param"], mutation.state["old"], mutation.state["new"])

        def forget() -> None:
            undo()
            self.tried.discard(tried)

        return Ahead(mutation, forget)

    def _propose(self, proposal: Proposal) -> Mutation:
        cfg = self.config
        text = proposal.best_files[cfg.file]
        if self._read is None or self._read[0] != text:  # the best version changes rarely
            self._read = (text, read_params(text, cfg.file, list(cfg.params)))
        values = self._read[1]
        for attempt in range(TRIES):
            # (cum_weights: what weights= would add up each time; the same draws)
            name = self.rng.choices(self._names, cum_weights=self._cum_weights)[0]
            old = values[name]
            # Each repeat of an idea already tried widens the search a little.
            new = self._step(name, cfg.params[name], old, reach=1.2 ** attempt)
            if new == old or (name, old, new) in self.tried:
                continue
            self.tried.add((name, old, new))
            return Mutation(
                description=f"{name} {_show(old)} → {_show(new)}",
                files={cfg.file: write_param(text, cfg.file, name, new)},
                rationale=f"step {self.steps[name]:.2f} of the range",
                state={"param": name, "old": old, "new": new})
        raise MutationError("every nearby parameter value was tried already")

    def feedback(self, mutation: Mutation, verdict: str) -> None:
        name = mutation.state.get("param")
        if name not in self.steps:
            return
        if verdict == KEPT:
            self.steps[name] = min(self.steps[name] * GROW, MAX_STEP)
            self.weights[name] = min(self.weights[name] * 1.5, 8.0)
        else:
            self.steps[name] = max(self.steps[name] * SHRINK, MIN_STEP)
            self.weights[name] = max(self.weights[name] * 0.95, 0.25)
        self._cum_weights = self._accumulate()

    def _accumulate(self) -> list[float]:
        return list(itertools.accumulate(self.weights[n] for n in self._names))


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
