"""Prompt caching as the API really does it: a breakpoint caches only when the whole prefix
up to it (tools, system, messages) reaches the model family's minimum cacheable length;
below it `cache_control` silently does nothing and every call pays full price.

`cache_warnings(spec)` is what `check` says about it: a judge whose fixed prefix can never
reach the minimum, a producer whose system prompt is big enough to matter but too small to
cache, and a budget (`max_cost_usd`) an agent mutator cannot be held to.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from engine import spec as specs

#: The minimum cacheable prompt length in tokens, by model family (the Messages API's
#: documentation: 4,096 for Opus 4.5/4.6 and Haiku 4.5; 2,048 for Haiku 3/3.5; 1,024 for
#: Sonnet 3.7–4.6 and Opus 4/4.1). The first key contained in the model id wins.
CACHE_MINIMUM: list[tuple[str, int]] = [
    ("opus-4-6", 4096), ("opus-4-5", 4096), ("haiku-4-5", 4096),
    ("haiku-3", 2048), ("3-5-haiku", 2048), ("3-haiku", 2048),
    ("sonnet", 1024), ("opus", 1024), ("haiku", 4096),
]
#: A prefix this much smaller than the minimum is too cheap to mention.
WORTH_MENTIONING = 0.25


def cache_minimum(model: str) -> int | None:
    """The model's minimum cacheable length, or None for a family not in the table."""
    model = model.lower()
    return next((n for key, n in CACHE_MINIMUM if key in model), None)


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) — enough to compare with a minimum."""
    return math.ceil(len(text) / 4)


def _judge_prefix(ev: specs.ChecklistEval) -> int:
    from engine.evaluators.judge import JUDGE_TOOL, judge_system

    questions = [i for i in ev.items if i.question is not None and not _has_check(i)]
    return estimate_tokens(json.dumps(JUDGE_TOOL)) + estimate_tokens(judge_system(questions))


def _has_check(item: specs.Item) -> bool:
    return any(getattr(item, k) is not None
               for k in ("regex", "contains", "not_contains", "words", "json_", "command"))


def cache_warnings(spec: specs.Spec) -> list[str]:
    """What `check` says about caching and budgets (see the module doc)."""
    out: list[str] = []
    ev = spec.evaluate
    if isinstance(ev, specs.ChecklistEval):
        if any(i.question is not None and not _has_check(i) for i in ev.items):
            judge = ev.judge or specs.LLMSettings()
            need = cache_minimum(judge.model)
            size = _judge_prefix(ev)
            if need and size < need:
                out.append(f"{spec.path}: judge: its fixed prefix (instructions and questions, "
                           f"~{size:,} tokens) is under {judge.model}'s minimum cacheable "
                           f"length ({need:,}), so it is never cached: every judgement pays it "
                           "in full (a model with a lower minimum, e.g. a Sonnet, caches it)")
        produce = ev.produce
        if isinstance(produce, specs.ProduceLLM) and produce.system_file:
            need = cache_minimum(produce.model)
            path = Path(spec.workspace) / produce.system_file
            try:
                size = estimate_tokens(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                size = 0
            calls = len(ev.inputs) * ev.samples
            if need and calls > 1 and need * WORTH_MENTIONING <= size < need:
                out.append(f"{spec.path}: produce: {produce.system_file} (~{size:,} tokens) is "
                           f"under {produce.model}'s minimum cacheable length ({need:,}): it is "
                           f"sent uncached on each of the {calls} calls of an evaluation")
    budget = spec.stop.max_cost_usd
    mutator = spec.mutator
    if budget is not None and isinstance(mutator, specs.AgentMutator):
        from engine.mutators.agent_cost import reports_cost

        if not reports_cost(mutator.command, mutator.prices):
            out.append(f"{spec.path}: stop.max_cost_usd ({budget:g}) cannot count the agent "
                       "mutator: its command prints no cost (use `claude -p --output-format "
                       "json`, aider, or give mutator.prices for an agent that prints tokens)")
    return out
