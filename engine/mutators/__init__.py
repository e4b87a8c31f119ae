"""Mutators propose one small change a round: `params` (built in, offline), `llm`
(Anthropic), `agent` (a coding-agent CLI)."""

from __future__ import annotations

from engine import spec as specs
from engine.model import Mutator


def build_mutator(spec: specs.Spec, playbooks: list[tuple[str, str]] = ()) -> Mutator:
    """The spec's mutator; `playbooks` are the (name, text) lessons it starts from
    (engine/playbook.py's read_playbooks)."""
    config = spec.mutator
    if isinstance(config, specs.ParamsMutator):
        from engine.mutators.params import ParamsMutator

        return ParamsMutator(config)
    if isinstance(config, specs.LLMMutator):
        from engine.mutators.llm import LLMMutator

        return LLMMutator(config, spec, playbooks)
    from engine.mutators.agent import AgentMutator

    return AgentMutator(config, spec)
