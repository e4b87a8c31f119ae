"""Evaluation tiers: the full tier (the spec's evaluator) and an optional cheaper `screen`
tier (fewer samples, a shorter budget, its own worker group).

A tier is an evaluator, the worker group it runs on, and environment added to its commands
(`AUTORESEARCH_TIER=screen|full` in a tiered run, so a script can shorten its own budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import spec as specs
from engine.evaluators import build_evaluator
from engine.model import CommandResult, Evaluator, LineSink, Session

SCREEN = "screen"
FULL = "full"


@dataclass
class Tier:
    name: str
    #: The one worker group this tier runs on (scores compare only within it).
    group: str | None
    evaluator: Evaluator
    env: dict[str, str] = field(default_factory=dict)

    def session(self, session: Session) -> Session:
        return TierSession(session, self.env) if self.env else session


class TierSession:
    """A session whose commands all get the tier's environment."""

    def __init__(self, inner: Session, env: dict[str, str]) -> None:
        self.inner = inner
        self.env = env

    async def run(self, command: str, *, timeout: float, stdin: str | None = None,
                  env: dict[str, str] | None = None,
                  on_line: LineSink | None = None) -> CommandResult:
        return await self.inner.run(command, timeout=timeout, stdin=stdin,
                                    env={**self.env, **(env or {})}, on_line=on_line)

    async def read_file(self, relpath: str) -> bytes | None:
        return await self.inner.read_file(relpath)


def screened(evaluate: specs.Evaluate, screen: specs.Screen) -> specs.Evaluate:
    """The spec's evaluation, made cheaper by the screen settings that apply to its kind."""
    update: dict = {}
    if isinstance(evaluate, specs.ChecklistEval):
        if screen.samples is not None:
            update["samples"] = screen.samples
        if screen.inputs is not None:
            update["inputs"] = evaluate.inputs[: screen.inputs]
        if screen.timeout_s is not None:
            update["produce"] = evaluate.produce.model_copy(update={"timeout_s": screen.timeout_s})
    else:
        if screen.command is not None:
            update["command"] = screen.command
        if screen.timeout_s is not None:
            update["timeout_s"] = screen.timeout_s
    return evaluate.model_copy(update=update)


def build_tiers(spec: specs.Spec, evaluator: Evaluator | None = None) -> tuple[Tier | None, Tier]:
    """(screen tier or None, full tier) for a spec; `evaluator` is the full tier's if built."""
    screen_group, full_group = spec.tier_groups()
    evaluator = evaluator or build_evaluator(spec)
    if spec.screen is None:
        return None, Tier(FULL, full_group, evaluator)
    cheap = spec.model_copy(update={"evaluate": screened(spec.evaluate, spec.screen)})
    screen = Tier(SCREEN, screen_group, build_evaluator(cheap),
                  {**spec.screen.env, "AUTORESEARCH_TIER": SCREEN})
    return screen, Tier(FULL, full_group, evaluator, {"AUTORESEARCH_TIER": FULL})
