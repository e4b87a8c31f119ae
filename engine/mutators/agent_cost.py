"""What a coding agent says it cost, read from its output, so `stop.max_cost_usd` can count
the agent mutator too.

- `claude -p --output-format json` (or `stream-json`) ends with a result object carrying
  `total_cost_usd` and `usage` (input, output, cache-write and cache-read tokens); its
  `result` field is the agent's final text (where DESCRIPTION:/RATIONALE: lines are).
- aider prints `Tokens: 4.2k sent, 312 received. Cost: $0.02 message, $0.05 session.`
- codex prints `tokens used: 12,345` (no split, no cost): tokens are recorded, and money only
  when the spec gives `prices` (then all tokens are priced as input, an upper bound for
  caching agents is not claimed: output is dearer, so the estimate is a lower bound).
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.model import Usage

_AIDER = re.compile(r"Tokens:\s*([\d.,]+)\s*([kKmM]?)\s*sent,\s*([\d.,]+)\s*([kKmM]?)\s*"
                    r"received\.(?:\s*Cost:\s*\$([\d.]+)\s*message)?")
_CODEX = re.compile(r"tokens used:?\s*([\d,]+)", re.IGNORECASE)
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


def _amount(number: str, suffix: str) -> int:
    return int(float(number.replace(",", "")) * _SCALE[suffix.lower()])


def _claude_result(output: str) -> dict[str, Any] | None:
    """The last JSON object in the output that carries `total_cost_usd`."""
    candidates = [output.strip(), *reversed(output.strip().splitlines())]
    for text in candidates:
        text = text.strip()
        if not (text.startswith("{") and "total_cost_usd" in text):
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and "total_cost_usd" in data:
            return data
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def agent_usage(output: str, prices: dict[str, float] | None = None
                ) -> tuple[Usage | None, str]:
    """The agent's reported usage (None when it reports none) and its final text (the claude
    result's `result` field, else the output itself)."""
    result = _claude_result(output)
    if result is not None:
        used = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        usage = Usage(_int(used.get("input_tokens")), _int(used.get("output_tokens")),
                      _int(used.get("cache_creation_input_tokens")),
                      _int(used.get("cache_read_input_tokens")))
        cost = result.get("total_cost_usd")
        usage.cost_usd = float(cost) if isinstance(cost, (int, float)) and cost > 0 else 0.0
        text = result.get("result")
        return usage, text if isinstance(text, str) else output
    found = _AIDER.findall(output)
    if found:
        usage = Usage()
        for sent, s_suffix, received, r_suffix, cost in found:  # one line per message
            usage.tokens_in += _amount(sent, s_suffix)
            usage.tokens_out += _amount(received, r_suffix)
            usage.cost_usd += float(cost) if cost else 0.0
        if not usage.cost_usd and prices:
            usage.cost_usd = (usage.tokens_in * prices.get("input", 0)
                              + usage.tokens_out * prices.get("output", 0)) / 1e6
        return usage, output
    counted = _CODEX.findall(output)
    if counted:
        usage = Usage(tokens_in=_amount(counted[-1], ""))
        if prices:
            usage.cost_usd = usage.tokens_in * prices.get("input", 0) / 1e6
        return usage, output
    return None, output


def reports_cost(command: str, prices: dict[str, float] | None) -> bool:
    """Whether an agent command is known to print what it cost (or can be priced)."""
    if prices:
        return True
    if re.search(r"\bclaude\b", command) and re.search(r"--output-format[= ](stream-)?json",
                                                        command):
        return True
    return bool(re.search(r"\baider\b", command))
