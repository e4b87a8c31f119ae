"""Mutators propose one small change a round: `params` (built in, offline), `llm`
(Anthropic), `agent` (a coding-agent CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import spec as specs
from engine.model import Mutator


def reads_guidance(kind: str) -> bool:
    """Whether the mutator of this `kind` reads guidance (the class says, without building
    one): the app and the engine tell a person what will happen to what they write."""
    if kind == "params":
        from engine.mutators.params import ParamsMutator as cls
    elif kind == "llm":
        from engine.mutators.llm import LLMMutator as cls  # type: ignore[assignment]
    else:
        from engine.mutators.agent import AgentMutator as cls  # type: ignore[assignment]
    return bool(getattr(cls, "reads_guidance", True))


#: What a guide command's result says when the mutator does not read guidance.
IGNORED_GUIDANCE = ("noted in the changelog, but the {kind} mutator does not read guidance: "
                    "it will not change the next proposals")


def build_mutator(spec: specs.Spec, playbooks: list[tuple[str, str]] = (),
                  read_experiment: Callable[[int], dict[str, Any] | None] | None = None,
                  ) -> Mutator:
    """The spec's mutator; `playbooks` are the (name, text) lessons it starts from
    (engine/playbook.py's read_playbooks), `read_experiment` reads an earlier experiment's
    row (both handed over by the loop: no mutator opens the store)."""
    config = spec.mutator
    if isinstance(config, specs.ParamsMutator):
        from engine.mutators.params import ParamsMutator

        return ParamsMutator(config, maximize=spec.direction == "maximize")
    if isinstance(config, specs.LLMMutator):
        from engine.mutators.llm import LLMMutator

        return LLMMutator(config, spec, playbooks, read_experiment)
    from engine.mutators.agent import AgentMutator

    return AgentMutator(config, spec, read_experiment)
