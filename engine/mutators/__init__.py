"""Mutators propose one small change a round: `params` (built in, offline), `llm`
(Anthropic), `agent` (a coding-agent CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import spec as specs
from engine.model import Mutator


def build_mutator(spec: specs.Spec, playbooks: list[tuple[str, str]] = (),
                  read_experiment: Callable[[int], dict[str, Any] | None] | None = None,
                  ) -> Mutator:
    """The spec's mutator; `playbooks` are the (name, text) lessons it starts from
    (engine/playbook.py's read_playbooks), `read_experiment` reads an earlier experiment's
    row (both handed over by the loop: no mutator opens the store)."""
    config = spec.mutator
    if isinstance(config, specs.ParamsMutator):
        from engine.mutators.params import ParamsMutator

        return ParamsMutator(config)
    if isinstance(config, specs.LLMMutator):
        from engine.mutators.llm import LLMMutator

        return LLMMutator(config, spec, playbooks, read_experiment)
    from engine.mutators.agent import AgentMutator

    return AgentMutator(config, spec, read_experiment)
