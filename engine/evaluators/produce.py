"""`produce: llm`: outputs to judge come from running the artifact itself on a model, the
target file named by `system_file` as the system prompt and each test input as the user turn.

The system prompt is the cached prefix, so N samples × M inputs read it from the cache
after the first call. Each produced output is also logged (bounded) as an event of the
experiment, which is how the detail view shows what was judged.
"""

from __future__ import annotations

from engine import spec as specs
from engine.llm import LLMClient, LLMUnavailable
from engine.model import Session, Usage, UserError

#: Characters of each output kept in its event (the store clips events at 2,000).
EVENT_CHARS = 1800
#: The user turn when an input is empty (the API refuses empty text).
NO_INPUT = "(no input: produce your output now)"


def sample_event(input: str, sample_no: int, text: str, stop: str | None = None) -> str:
    """The event line that stores one produced output, truncated, for the detail view (with
    a note when the producer was cut off at max_tokens)."""
    label = " ".join(input.split())[:60]
    body = text if len(text) <= EVENT_CHARS else text[:EVENT_CHARS] + f"\n…[{len(text)} chars]"
    note = " (cut off at max_tokens)" if stop == "max_tokens" else ""
    return f"output for input {label!r}, sample {sample_no}{note}:\n{body}"


class LLMProducer:
    """Runs the artifact on a model, once per input and sample."""

    def __init__(self, config: specs.ProduceLLM) -> None:
        if not config.system_file:
            raise UserError("evaluate.produce.system_file: name the target file that is the "
                            "system prompt (e.g. system_file: prompt.md)")
        self.config = config
        self.client = LLMClient(config, role="llm producer")

    async def produce(self, session: Session, input: str,
                      sample_no: int) -> tuple[str, Usage, str | None]:
        """One output: its text, what it cost, and why the model stopped (`max_tokens`: cut)."""
        path = self.config.system_file
        assert path is not None
        raw = await session.read_file(path)
        if raw is None:
            raise LLMUnavailable(f"llm producer: system_file {path} is not in the candidate",
                                 "refused")  # a spec to fix, not an outage to wait out
        system = raw.decode("utf-8", errors="replace")
        if not system.strip():
            # The API refuses empty text blocks; an empty artifact produces nothing to judge.
            return "", Usage(), None
        reply = await self.client.create(
            system=[{"type": "text", "text": system, "cache_control": self.client.cache_control()}],
            messages=[{"role": "user", "content": input if input.strip() else NO_INPUT}])
        return reply.text(), reply.usage, reply.stop_reason
