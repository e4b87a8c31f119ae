"""The Anthropic client every LLM part shares (mutator, judge, producer, playbook): the key
from `ANTHROPIC_API_KEY` only, retries with backoff, usage and cost from a price table.

`anthropic` is imported lazily, so runs that never call a model do not pay for the import.
The key never leaves this module: it is passed to the SDK, and every error message that
could carry it back (a proxy echoing headers, a model repeating it) goes through `redact`.

Whatever a server sends, a call ends in a Reply or in one of three exceptions, each with its
own consequence (engine/outage.py): `LLMRejected` (the API refused this request: a 400 "prompt
is too long" — that candidate's verdict), `LLMReplyError` (a reply that is not a usable
message: invalid UTF-8, an HTML page, JSON that is not a message — that call's outcome), and
`LLMUnavailable` (an outage after the last retry, or a refused key: the run pauses and says
so). Every reply's usage is also charged to the caller's meter (engine/spend.py), so money
spent by calls whose experiment is interrupted is still counted.

API version: SDK 2.x sends `anthropic-version: 2026-10-21`, which refuses `temperature`
(even 1.0). A spec's `temperature` is therefore sent only with `api_version: "2023-06-01"`.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import calls
from engine import spec as specs
from engine.model import MutationError, Usage, UserError
from engine.spend import charge, experiment

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

#: USD per million tokens (input, output) by model family, as published when this was
#: written; a spec's `prices:` overrides them. Unknown families are priced as the dearest.
FAMILY_PRICES = {"opus": (5.0, 25.0), "sonnet": (3.0, 15.0), "haiku": (1.0, 5.0)}
#: Cache writes cost 1.25× input (5-minute TTL) or 2× (1-hour TTL); cache reads 0.1× input.
CACHE_WRITE_FACTOR, CACHE_WRITE_1H_FACTOR, CACHE_READ_FACTOR = 1.25, 2.0, 0.1
PRICE_KEYS = ("input", "output", "cache_write", "cache_read", "cache_write_1h")
#: The longest wait between two attempts, whatever `retry-after` asks for.
MAX_BACKOFF_S = 60.0
#: The first API version that refuses sampling parameters.
NO_SAMPLING_VERSION = "2026-10-21"
#: Mark a prompt block as a cache breakpoint (everything up to it is cached).
EPHEMERAL = {"type": "ephemeral"}
#: Calls further apart than this outlive the 5-minute cache: "auto" switches to 1 hour.
LONG_GAP_S = 240.0


class LLMUnavailable(MutationError):
    """The API failed after every retry (`kind` "outage": the run pauses and retries on a
    schedule) or refused the key or model (`kind` "refused": the run pauses until resumed)."""

    usage: Usage | None = None
    description = "the model could not be reached"

    def __init__(self, text: str, kind: str = "outage",
                 settings: specs.LLMSettings | None = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.settings = settings


class LLMRejected(MutationError):
    """The API refused this one request (400 "prompt is too long", 413): the verdict of the
    experiment that made it, never a pause of the run."""

    usage: Usage | None = None
    description = "request refused by the API"


class LLMReplyError(MutationError):
    """The reply could not be read as a message (invalid UTF-8, an HTML page, not JSON)."""

    usage: Usage | None = None
    description = "unreadable model reply"


def redact(text: str) -> str:
    """Remove the API key from text that may be stored or shown."""
    key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
    if key and len(key) >= 8:
        text = text.replace(key, "[redacted]")
    return text


def api_key(role: str) -> str:
    key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
    if not key:
        raise UserError(
            f"ANTHROPIC_API_KEY is not set: the {role} calls the Anthropic API. Export the key "
            "(export ANTHROPIC_API_KEY=sk-ant-...) or use a deterministic check / the params mutator")
    return key


def prices_for(settings: specs.LLMSettings) -> dict[str, float]:
    """USD per million tokens for each kind of token: the spec's table, else the family's."""
    given = dict(settings.prices or {})
    unknown = sorted(set(given) - set(PRICE_KEYS))
    if unknown:
        raise UserError(f"prices: unknown key(s) {', '.join(unknown)}; use {', '.join(PRICE_KEYS)}")
    family = next((f for f in FAMILY_PRICES if f in settings.model.lower()), None)
    base_in, base_out = FAMILY_PRICES[family or "opus"]
    price_in = given.get("input", base_in)
    return {"input": price_in, "output": given.get("output", base_out),
            "cache_write": given.get("cache_write", price_in * CACHE_WRITE_FACTOR),
            "cache_read": given.get("cache_read", price_in * CACHE_READ_FACTOR),
            "cache_write_1h": given.get("cache_write_1h", price_in * CACHE_WRITE_1H_FACTOR)}


def _count(raw: Any, name: str) -> int:
    value = raw.get(name) if isinstance(raw, dict) else getattr(raw, name, 0)
    return value if isinstance(value, int) and value > 0 else 0


def usage_of(raw: Any, prices: dict[str, float]) -> Usage:
    """Our Usage from the API's. `input_tokens` excludes cached tokens (they are counted in
    the two cache fields), so the four counts add up to the whole prompt and price separately;
    1-hour cache writes (in `cache_creation`) are priced as such."""
    usage = Usage(tokens_in=_count(raw, "input_tokens"), tokens_out=_count(raw, "output_tokens"),
                  tokens_cache_write=_count(raw, "cache_creation_input_tokens"),
                  tokens_cache_read=_count(raw, "cache_read_input_tokens"))
    split = getattr(raw, "cache_creation", None)
    long = min(_count(split, "ephemeral_1h_input_tokens"), usage.tokens_cache_write)
    usage.cost_usd = (usage.tokens_in * prices["input"] + usage.tokens_out * prices["output"]
                      + (usage.tokens_cache_write - long) * prices["cache_write"]
                      + long * prices.get("cache_write_1h", prices["input"] * 2)
                      + usage.tokens_cache_read * prices["cache_read"]) / 1e6
    return usage


def llm_roles(spec: specs.Spec) -> dict[str, specs.LLMSettings]:
    """Which parts of a spec call a model, with their settings."""
    roles: dict[str, specs.LLMSettings] = {}
    if isinstance(spec.mutator, specs.LLMMutator):
        roles["mutator"] = spec.mutator
    ev = spec.evaluate
    if isinstance(ev, specs.ChecklistEval):
        if any(i.question is not None and not _has_check(i) for i in ev.items):
            roles["judge"] = ev.judge or specs.LLMSettings(temperature=0.0)
        if isinstance(ev.produce, specs.ProduceLLM):
            roles["produce"] = ev.produce
    return roles


def run_prices(spec: specs.Spec) -> dict[str, Any] | None:
    """The price table a run uses, copied into the run when it starts."""
    roles = llm_roles(spec)
    if not roles:
        return None
    return {role: {"model": s.model, **prices_for(s)} for role, s in roles.items()}


def llm_warnings(spec: specs.Spec) -> list[str]:
    """Advice for `check`: a missing key, a temperature that will not be sent, guessed prices."""
    out = []
    roles = llm_roles(spec)
    if roles and not os.environ.get("ANTHROPIC_API_KEY", "").strip():
        out.append(f"{spec.path}: ANTHROPIC_API_KEY is not set; `run` will refuse this spec "
                   f"({', '.join(roles)} call the Anthropic API)")
    from engine.cache import cache_warnings

    out += cache_warnings(spec)
    for role, s in roles.items():
        # The default judge (no `judge:` block) asks for 0 itself; only a person's choice warns.
        chosen = "temperature" in s.model_fields_set and not (
            role == "judge" and getattr(spec.evaluate, "judge", None) is None)
        if chosen and _no_sampling(s):
            out.append(f"{spec.path}: {role}: temperature is not sent under API version "
                       f"{NO_SAMPLING_VERSION}; set api_version: \"2023-06-01\" to send it")
        if not s.prices and not any(f in s.model.lower() for f in FAMILY_PRICES):
            out.append(f"{spec.path}: {role}: no `prices` for model {s.model!r}; costs are "
                       "estimated at the dearest family's prices")
    return out


def _no_sampling(settings: specs.LLMSettings) -> bool:
    return settings.api_version is None or settings.api_version >= NO_SAMPLING_VERSION


def _has_check(item: specs.Item) -> bool:
    return any(getattr(item, k) is not None
               for k in ("regex", "contains", "not_contains", "words", "json_", "command"))


@dataclass
class Reply:
    """One model reply and what it cost."""

    message: Any  # anthropic.types.Message
    usage: Usage

    @property
    def stop_reason(self) -> str | None:
        return getattr(self.message, "stop_reason", None)

    @property
    def blocks(self) -> list[Any]:
        # A proxy or a broken reply can send any JSON; the SDK passes it through unchecked.
        content = getattr(self.message, "content", None)
        return content if isinstance(content, list) else []

    def tool_input(self, name: str) -> dict[str, Any] | None:
        for block in self.blocks:
            if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == name:
                data = getattr(block, "input", None)
                return data if isinstance(data, dict) else None
        return None

    def text(self) -> str:
        return "".join(str(getattr(b, "text", "")) for b in self.blocks
                       if getattr(b, "type", None) == "text")

    def describe(self, name: str) -> str:
        """What the reply held instead of a usable `name` call, in words for a reason."""
        calls = [b for b in self.blocks if getattr(b, "type", None) == "tool_use"]
        for block in calls:
            if getattr(block, "name", None) == name:
                data = getattr(block, "input", None)
                if not isinstance(data, dict):
                    return f"its {name} input is {_kind(data)}, not an object"
        said = " ".join(self.text().split())[:150]
        if said:
            return f"it answered in text: {said!r}"
        if calls:
            return "it called " + ", ".join(repr(getattr(b, "name", "?")) for b in calls)
        if self.stop_reason == "max_tokens":
            return "the reply was cut off at max_tokens before any content"
        return f"the reply has no content (stop_reason {self.stop_reason!r})"


class LLMClient:
    """`AsyncAnthropic` with our retries, backoff and accounting. One per role."""

    def __init__(self, settings: specs.LLMSettings, role: str) -> None:
        key = api_key(role)  # before the (slow) SDK import: no key, no wait
        self.settings = settings
        self.role = role
        self.prices = prices_for(settings)
        #: When the last call started, and whether calls came LONG_GAP_S apart (1-hour TTL).
        self.last_call: float | None = None
        self.long_gaps = False
        import anthropic

        headers = {"anthropic-version": settings.api_version} if settings.api_version else None
        # SDK retries are off: ours log nothing secret, back off as the spec says, and end in
        # LLMUnavailable (a paused run) instead of an exception the loop does not know.
        self.client: AsyncAnthropic = anthropic.AsyncAnthropic(
            api_key=key, base_url=settings.base_url or None, max_retries=0,
            timeout=settings.timeout_s, default_headers=headers)

    def cache_control(self) -> dict[str, str]:
        """The breakpoint marker for this client's next call: the 1-hour TTL when the spec
        says so, or ("auto") once two calls came more than LONG_GAP_S apart — a round that
        takes longer than the default 5-minute cache lives would find it expired every time."""
        ttl = getattr(self.settings, "cache_ttl", "auto")
        if ttl == "1h" or (ttl == "auto" and self.long_gaps):
            return {"type": "ephemeral", "ttl": "1h"}
        return dict(EPHEMERAL)

    async def create(self, *, system: list[dict[str, Any]], messages: list[dict[str, Any]],
                     tools: list[dict[str, Any]] | None = None, tool: str | None = None,
                     temperature: float | None = None) -> Reply:
        """One Messages call, retried on 408/409/429/5xx/529, timeouts and lost connections."""
        s = self.settings
        now = time.monotonic()
        if self.last_call is not None and now - self.last_call > LONG_GAP_S:
            self.long_gaps = True
        self.last_call = now
        kwargs: dict[str, Any] = {"model": s.model, "max_tokens": s.max_tokens,
                                  "system": system, "messages": messages}
        if tools:
            kwargs["tools"] = tools
        if tool:
            kwargs["tool_choice"] = {"type": "tool", "name": tool}
        if not _no_sampling(s):
            kwargs["extra_body"] = {"temperature": s.temperature if temperature is None
                                    else temperature}
        # Journaled before it is sent, with an upper bound of its cost (engine/calls.py).
        journal = calls.current()
        call = None if journal is None else journal.begin(
            self.role, s.model, calls.estimate_usd(kwargs, self.prices, s.max_tokens),
            experiment())
        try:
            reply = await self._attempts(kwargs)
        except BaseException:
            if journal is not None:
                journal.failed(call)  # (a stop's cancel too: the server saw us go away)
            raise
        if journal is not None:
            journal.done(call, reply.usage)  # committed before anything else reads it
        charge(reply.usage)
        return reply

    async def _attempts(self, kwargs: dict[str, Any]) -> Reply:
        import anthropic

        s = self.settings
        attempts = s.max_retries + 1
        last = ""
        for attempt in range(attempts):
            wait: float | None = None
            try:
                message = await self.client.messages.create(**kwargs)
            except anthropic.APIStatusError as exc:
                last = self._describe_status(exc)
                if exc.status_code in REJECTED_STATUS:
                    raise LLMRejected(redact(f"{self.role}: the API refused this request: "
                                             f"{last}")) from None
                if not _retryable(exc):
                    raise self._unavailable(f"the Anthropic API refused the request: {last}",
                                            "refused") from None
                wait = _retry_after(exc.response.headers)
            except anthropic.APITimeoutError:
                last = f"no reply within {s.timeout_s:g}s"
            except anthropic.APIConnectionError as exc:
                last = f"cannot reach {self.client.base_url}: {exc.__cause__ or exc}"
            except Exception as exc:  # noqa: BLE001 - whatever a server sends is an outcome
                # anthropic.APIError for a reply the SDK could not read, but also what it lets
                # through: UnicodeDecodeError on invalid UTF-8, JSONDecodeError on cut JSON.
                raise LLMReplyError(redact(f"{self.role}: unreadable reply from the API: "
                                           f"{type(exc).__name__}: {exc}")[:500]) from None
            else:
                if not hasattr(message, "content"):  # a 200 that is a page or bare JSON
                    raise LLMReplyError(redact(f"{self.role}: the API's reply is not a message: "
                                               f"{describe_body(message)}"))
                return Reply(message, usage_of(getattr(message, "usage", None), self.prices))
            if attempt + 1 < attempts:
                delay = wait if wait is not None else s.retry_backoff_s * 2 ** attempt
                await asyncio.sleep(min(max(delay, 0.0), MAX_BACKOFF_S))
        raise self._unavailable(
            f"the Anthropic API failed {attempts} time{'s' if attempts > 1 else ''}; last: {last}")

    def _unavailable(self, text: str, kind: str = "outage") -> LLMUnavailable:
        return LLMUnavailable(redact(f"{self.role}: {text}"), kind, self.settings)

    @staticmethod
    def _describe_status(exc: Any) -> str:
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        kind = error.get("type") or type(exc).__name__
        text = error.get("message") or str(exc)
        return redact(f"{exc.status_code} {kind}: {text}")[:500]

    async def close(self) -> None:
        await self.client.close()


def _kind(value: Any) -> str:
    if value is None:
        return "missing"
    names = {str: "a string", list: "a list", int: "a number", float: "a number",
             bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


#: Statuses that refuse the request itself (too long, malformed): not the run's trouble.
REJECTED_STATUS = (400, 413, 422)


def describe_body(body: Any) -> str:
    """A short, safe account of a reply that is not a message: an HTML page's title, or the
    start of whatever it was."""
    text = body if isinstance(body, str) else repr(body)
    title = re.search(r"<title[^>]*>(.*?)</title>", text, flags=re.IGNORECASE | re.DOTALL)
    if title:
        return f"an HTML page titled {' '.join(title[1].split())[:100]!r}"
    if re.match(r"\s*<(!doctype|html)", text, flags=re.IGNORECASE):
        return "an HTML page"
    kind = type(body).__name__
    return f"a JSON {kind}: {' '.join(text.split())[:100]!r}" if kind in ("list", "int",
                                                                        "float") else \
        f"{' '.join(text.split())[:100]!r}"


def _retryable(exc: Any) -> bool:
    should = exc.response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return exc.status_code in (408, 409, 429) or exc.status_code >= 500


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asks us to wait (`retry-after-ms` or `retry-after`), if it says."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) / scale
            except ValueError:
                continue
    return None
