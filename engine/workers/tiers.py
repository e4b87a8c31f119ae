"""Evaluation tiers: the full tier (the spec's evaluator) and an optional cheaper `screen`
tier (fewer samples, a shorter budget, its own worker group).

A tier is an evaluator, the worker group it runs on, and environment added to its commands
(`AUTORESEARCH_TIER=screen|full` in a tiered run, so a script can shorten its own budget).
The loop builds the evaluators (of the spec, and of `screen_spec(spec)`) and hands them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import spec as specs
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


def screen_spec(spec: specs.Spec) -> specs.Spec | None:
    """The spec whose evaluation is the screen tier's, or None in an untiered run."""
    if spec.screen is None:
        return None
    return spec.model_copy(update={"evaluate": screened(spec.evaluate, spec.screen)})


def build_tiers(spec: specs.Spec, full: Evaluator,
                screen: Evaluator | None) -> tuple[Tier | None, Tier]:
    """(screen tier or None, full tier) for a spec, with the evaluators built for them
    (`screen`: of screen_spec(spec))."""
    from engine.library import file_env  # $AUTORESEARCH_FILE of a library run

    screen_group, full_group = spec.tier_groups()
    if spec.screen is None or screen is None:
        return None, Tier(FULL, full_group, full, file_env(spec))
    return (Tier(SCREEN, screen_group, screen,
                 {**spec.screen.env, **file_env(spec), "AUTORESEARCH_TIER": SCREEN}),
            Tier(FULL, full_group, full, {**file_env(spec), "AUTORESEARCH_TIER": FULL}))
