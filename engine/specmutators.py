"""The spec's `mutator:` section (params, llm, agent) and the model settings an LLM mutator,
an LLM producer and a judge share (`LLMSettings`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from engine.specbase import Strict


class Param(Strict):
    type: Literal["int", "float", "choice"]
    min: float | None = None
    max: float | None = None
    scale: Literal["linear", "log"] = "linear"
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Param:
        if self.type == "choice":
            if not self.values or len(self.values) < 2:
                raise ValueError("a choice parameter needs `values` with at least two entries")
        else:
            if self.min is None or self.max is None:
                raise ValueError(f"a {self.type} parameter needs `min` and `max`")
            if self.min >= self.max:
                raise ValueError("`min` must be below `max`")
            if self.scale == "log" and self.min <= 0:
                raise ValueError("a log-scale parameter needs `min` > 0")
        return self


class ParamsMutator(Strict):
    kind: Literal["params"]
    #: The file holding the parameters (YAML, JSON, TOML, `NAME = value` lines in Python).
    file: str | None = None
    params: dict[str, Param] = Field(min_length=1)
    seed: int | None = None


class LLMSettings(Strict):
    model: str = "claude-sonnet-4-6"  # 4-5 is deprecated (end of life 2026-11-30)
    max_tokens: int = Field(default=4096, gt=0)
    temperature: float = Field(default=1.0, ge=0, le=1)
    timeout_s: float = Field(default=120, gt=0)
    max_retries: int = Field(default=4, ge=0)
    #: USD per million tokens: input, output, cache_write, cache_read.
    prices: dict[str, float] | None = None
    #: The Messages API endpoint; default `ANTHROPIC_BASE_URL`, else Anthropic's own.
    base_url: str | None = None
    #: First wait between retries in seconds, doubling each time (a `retry-after` header wins).
    retry_backoff_s: float = Field(default=2.0, ge=0)
    #: `anthropic-version` to send. Default: the SDK's (2026-10-21), which takes no sampling
    #: parameters, so `temperature` is not sent; "2023-06-01" sends it (models that accept it).
    api_version: str | None = None
    #: After an outage (every retry failed) the run pauses and tries again this many seconds
    #: later, doubling each time up to `outage_retry_max_s` (engine/outage.py).
    outage_retry_s: float = Field(default=30, gt=0)
    outage_retry_max_s: float = Field(default=600, gt=0)
    #: Prompt-cache lifetime: "5m", "1h", or "auto" (1 hour once calls come more than
    #: 4 minutes apart, as in runs with long evaluations).
    cache_ttl: Literal["auto", "5m", "1h"] = "auto"


class LLMMutator(LLMSettings):
    kind: Literal["llm"]
    #: How many earlier experiments are shown whole; older ones are summarised.
    recent: int = Field(default=20, ge=0)
    #: Playbook files (markdown) or earlier runs' names to start from.
    playbooks: list[str] = []


class AgentMutator(Strict):
    kind: Literal["agent"]
    #: The coding-agent command, run in the candidate copy; the prompt arrives on stdin
    #: and in the file named by $AUTORESEARCH_PROMPT.
    command: str
    timeout_s: float = Field(default=600, gt=0)
    recent: int = Field(default=20, ge=0)
    #: USD per million tokens (input, output) for agents that print token counts but no cost
    #: (codex); `claude -p --output-format json` and aider print their cost themselves.
    prices: dict[str, float] | None = None


Mutator = Annotated[ParamsMutator | LLMMutator | AgentMutator, Field(discriminator="kind")]
