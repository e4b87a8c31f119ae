"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

Tests point `ANTHROPIC_BASE_URL` at it. It records every request (path, headers, JSON body)
and answers from a scripted queue of replies; when the queue is empty it asks an optional
`responder(body)` function, and failing that answers with a non-retryable 500 so a test
that forgot a reply fails loudly instead of hanging. Network only on 127.0.0.1.

It misbehaves on purpose when told: a reply can be raw bytes (invalid UTF-8, an HTML page),
hang for as long as a test likes, or carry terminal escape sequences. It keeps the bill: the
usage of every 200 reply it delivered to a client still listening (`billed`). With
`cache=True` it reports usage the way the real API does, from the request itself: prompt
tokens estimated at 4 characters each, cache hits only on a breakpoint whose whole prefix
was written before within its TTL (5 minutes, or 1 hour) and reaches the model family's
minimum cacheable length (CACHE_MINIMUM, its own table).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    """One scripted HTTP reply."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (to provoke client timeouts, or hang).
    delay: float = 0.0
    #: Bytes to send as the body instead of `body` (invalid UTF-8, an HTML page).
    raw: bytes | None = None
    content_type: str = "application/json"


def usage(tokens_in: int = 100, tokens_out: int = 50, cache_write: int = 0,
          cache_read: int = 0) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out,
            "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}


def message(content: list[dict[str, Any]], *, stop_reason: str = "end_turn",
            model: str = "claude-test", **tokens: int) -> Reply:
    return Reply(200, {"id": "msg_test", "type": "message", "role": "assistant", "model": model,
                       "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                       "usage": usage(**tokens)})


def tool_reply(name: str, arguments: dict[str, Any], **tokens: int) -> Reply:
    """The model calling tool `name` with these arguments."""
    return message([{"type": "tool_use", "id": "toolu_test", "name": name, "input": arguments}],
                   stop_reason="tool_use", **tokens)


def text_reply(text: str, *, stop_reason: str = "end_turn", **tokens: int) -> Reply:
    return message([{"type": "text", "text": text}], stop_reason=stop_reason, **tokens)


def raw_reply(data: bytes, status: int = 200, content_type: str = "application/json") -> Reply:
    """A body of raw bytes: invalid UTF-8, truncated JSON, an HTML error page."""
    return Reply(status, {}, raw=data, content_type=content_type)


#: Text a hostile or broken model might send: a tmux retitle, a screen clear, colours, a
#: bidi override and a C1 control. Stored as data; displays make it printable.
HOSTILE_TEXT = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m \u202eevil\u202c \x9b6n done"


def hang(seconds: float = 60.0) -> Reply:
    """A request the server sits on (until the client goes away or the server stops)."""
    return Reply(500, {"type": "error", "error": {"type": "api_error", "message": "hung"}},
                 {"x-should-retry": "false"}, delay=seconds)


def error_reply(status: int, kind: str = "api_error", text: str = "boom",
                headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"type": "error", "error": {"type": kind, "message": text}},
                 headers or {})


def change(description: str, edits: list[dict[str, str]], rationale: str = "because",
           **tokens: int) -> Reply:
    """The mutator's tool call: one change as search/replace edits."""
    return tool_reply("propose_change", {"description": description, "rationale": rationale,
                                         "edits": edits}, **tokens)


class FakeAnthropic:
    """The server; use as a context manager. `url` is what ANTHROPIC_BASE_URL should be."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply] | None = None, *,
                 cache: bool = False) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.responder = responder
        #: Usage of every 200 reply delivered (what the API would bill), with its model.
        self.billed: list[dict[str, Any]] = []
        #: Compute usage from the request, with the real API's cache rules.
        self.cache = cache
        #: False: count every prompt token as uncached (a run without caching, compared).
        self.honour_cache = True
        #: Written cache prefixes: hash -> expiry (monotonic seconds).
        self._cached: dict[str, float] = {}
        #: Seconds added to the clock (a test ages the cache without waiting).
        self.clock_offset = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                reply = server._next(self.path, dict(self.headers), body)
                if reply.delay:
                    server._stopping.wait(reply.delay)
                if server._stopping.is_set() or _client_gone(self.connection):
                    return  # the client gave up (a timeout, a stop): nothing is delivered
                if reply.raw is None and server.cache and reply.status == 200:
                    reply = server._with_cache_usage(body, reply)
                data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(data)))
                    self.send_header("request-id", "req_test")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (a timeout test)
                server._bill(body, reply)

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass  # a client killed mid-request (a SIGKILL test): nothing to answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    def _next(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body,
                                  "at": time.monotonic()})
            if self.replies:
                return self.replies.popleft()
        if self.responder is not None:
            return self.responder(body)
        return error_reply(500, text="the fake server has no scripted reply left",
                           headers={"x-should-retry": "false"})

    def _bill(self, request: dict[str, Any], reply: Reply) -> None:
        used = reply.body.get("usage") if reply.raw is None and reply.status == 200 else None
        if isinstance(used, dict):
            with self._lock:
                self.billed.append({"model": request.get("model"),
                                    "tool": (request.get("tool_choice") or {}).get("name"),
                                    **used})

    def billed_tokens(self) -> dict[str, int]:
        """The four token counts summed over every delivered reply."""
        keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                "cache_read_input_tokens")
        with self._lock:
            return {k: sum(int(b.get(k) or 0) for b in self.billed) for k in keys}

    def billed_usd(self, prices: dict[str, float]) -> float:
        """What the delivered replies cost at these USD-per-million prices (input, output,
        cache_write, cache_read; `cache_write_1h` for 1-hour writes, default 2 × input)."""
        total = 0.0
        with self._lock:
            bills = list(self.billed)
        for b in bills:
            split = b.get("cache_creation") or {}
            long = int(split.get("ephemeral_1h_input_tokens") or 0)
            short = int(b.get("cache_creation_input_tokens") or 0) - long
            total += (int(b.get("input_tokens") or 0) * prices["input"]
                      + int(b.get("output_tokens") or 0) * prices["output"]
                      + short * prices["cache_write"]
                      + long * prices.get("cache_write_1h", 2 * prices["input"])
                      + int(b.get("cache_read_input_tokens") or 0) * prices["cache_read"])
        return total / 1e6

    def _with_cache_usage(self, request: dict[str, Any], reply: Reply) -> Reply:
        """The reply with its input usage computed from the request (see the module doc)."""
        pieces = prompt_pieces(request)
        total = sum(tokens(text) for text, _ in pieces)
        minimum = cache_minimum(str(request.get("model") or ""))
        now = time.monotonic() + self.clock_offset
        read = written = written_1h = 0
        prefix = hashlib.sha256()
        seen = 0
        ends: list[tuple[int, str]] = []  # every block boundary: (prefix tokens, hash)
        breakpoints: list[tuple[int, str]] = []  # (index into ends, ttl)
        for text, control in pieces:
            prefix.update(text.encode("utf-8", "surrogatepass"))
            prefix.update(b"\x00")
            seen += tokens(text)
            ends.append((seen, prefix.copy().hexdigest()))
            if control is not None and self.honour_cache:
                breakpoints.append((len(ends) - 1, control.get("ttl", "5m")))
        with self._lock:
            # A hit is the longest prefix written before, at an explicit breakpoint or at
            # any of the 20 block boundaries before one (the API's lookback).
            for at, _ in breakpoints:
                for j in range(max(0, at - LOOKBACK), at + 1):
                    size, key = ends[j]
                    if size >= minimum and self._cached.get(key, 0) > now:
                        read = max(read, size)
            for at, ttl in breakpoints:
                size, key = ends[at]
                life = 3600.0 if ttl == "1h" else 300.0
                if size <= read:
                    if key in self._cached:  # a hit refreshes the entry's TTL
                        self._cached[key] = now + life
                    continue
                if size < minimum:
                    continue  # below the minimum a breakpoint does nothing
                fresh = size - read - written - written_1h
                if ttl == "1h":
                    written_1h += fresh
                else:
                    written += fresh
                self._cached[key] = now + life
        body = json.loads(json.dumps(reply.body))
        out = int((body.get("usage") or {}).get("output_tokens") or 0)
        body["usage"] = {"input_tokens": total - read - written - written_1h,
                         "output_tokens": out,
                         "cache_creation_input_tokens": written + written_1h,
                         "cache_read_input_tokens": read,
                         "cache_creation": {"ephemeral_5m_input_tokens": written,
                                            "ephemeral_1h_input_tokens": written_1h}}
        return Reply(reply.status, body, reply.headers, reply.delay)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def env(self, key: str = "") -> dict[str, str]:
        """The environment that points an engine at this server (for a subprocess:
        `cli_env(**api.env())`)."""
        return {"ANTHROPIC_API_KEY": key or TEST_KEY, "ANTHROPIC_BASE_URL": self.url}

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # hanging replies end now
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def _client_gone(conn: socket.socket) -> bool:
    """True when the client closed its end (a readable socket with nothing to read)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


#: The API's minimum cacheable prompt length by model family, in tokens (the stand-in's own
#: copy, so a mistake in the engine's table shows up as a test failure).
CACHE_MINIMUM = [("opus-4-5", 4096), ("opus-4-6", 4096), ("haiku-4-5", 4096),
                 ("haiku-3", 2048), ("sonnet", 1024), ("opus", 1024), ("haiku", 2048)]


#: Block boundaries before a breakpoint where the API also looks for a cache hit.
LOOKBACK = 20


def cache_minimum(model: str) -> int:
    return next((n for key, n in CACHE_MINIMUM if key in model), 1024)


def tokens(text: str) -> int:
    """The stand-in's token estimate: 4 characters a token."""
    return math.ceil(len(text) / 4) if text else 0


def prompt_pieces(body: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """The prompt in the API's cache order (tools, system, messages), as (text, cache_control)
    pieces; a piece with cache_control ends a breakpoint."""
    pieces: list[tuple[str, dict[str, Any] | None]] = []
    for tool in body.get("tools") or []:
        pieces.append((json.dumps(tool, sort_keys=True), tool.get("cache_control")))
    system = body.get("system") or []
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    for block in system:
        pieces.append((str(block.get("text", "")), block.get("cache_control")))
    for msg in body.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content or []:
            text = block.get("text") if block.get("type") == "text" else json.dumps(block)
            pieces.append((str(text or ""), block.get("cache_control")))
    return pieces


# ---------------------------------------------------------------- runs against the fake server

#: The key tests export; the server sees it, nothing we store may.
TEST_KEY = "sk-ant-test-key-0123456789abcdef"

PRICES = "{input: 3, output: 15, cache_write: 3.75, cache_read: 0.3}"
#: The same prices as `FakeAnthropic.billed_usd` takes them.
PRICE_TABLE = {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3}

#: Edits the tests' model makes to `page_workspace`'s page.
HEADLINE = {"file": "page.md", "search": "# Grow faster", "replace": "# Grow 3x faster"}
CTA = {"file": "page.md", "search": "Contact us.", "replace": "Start your free trial today."}


def page_workspace(root: Path) -> Path:
    """A landing page scored by deterministic checks: a number, a call to action, brevity."""
    ws = root / "ws"
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "page.md").write_text("# Grow faster\n\nOur tool helps teams ship.\n\nContact us.\n")
    (ws / "notes.md").write_text("Brand notes: never change this file.\n")
    return ws


def page_spec(ws: Path, name: str = "page", *, mutator: str = "", evaluate: str = "",
              stop: str = "max_rounds: 2", parallel: int = 1, extra: str = "",
              prices: str = PRICES, retries: int = 1, timeout: float = 5,
              ahead: int = 0) -> Path:
    """An llm-mutator spec over `page_workspace` (fast retries, a price table). `ahead: 0`:
    proposals are made one at a time, so scripted replies are used in order (a run proposes
    ahead of its slots by default: engine/stream.py)."""
    evaluate = evaluate or """
evaluate:
  kind: checklist
  produce: {kind: command, command: cat page.md}
  items:
    - name: number
      question: Does the headline include a number?
      regex: "^#.*[0-9]"
    - name: cta
      question: Is there a call to action?
      contains: Start your free trial
    - {name: short, words: {max: 60}}
"""
    text = f"""
name: {name}
target:
  workspace: {ws.name}
  files: [page.md]
  protected: [notes.md]
mutator:
  kind: llm
  model: claude-sonnet-test
  max_retries: {retries}
  retry_backoff_s: 0.01
  timeout_s: {timeout}
  prices: {prices}
{mutator}
{evaluate}
stop:
  {stop}
  max_failures: null
parallel: {parallel}
ahead: {ahead}
{extra}
"""
    path = ws.parent / f"{name}.yaml"
    path.write_text(text.lstrip())
    return path


async def drive(host: Any, timeout: float = 30) -> dict[int, str]:
    """Run the host's runs to the end, stopping them if they outlive `timeout`."""
    import asyncio

    task = asyncio.ensure_future(host.run_until_done())
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        host.stop_all()
        await asyncio.wait_for(task, 10)
        raise AssertionError(f"the runs did not finish within {timeout}s") from None


async def run_spec(tmp_path: Path, spec: Path, timeout: float = 30) -> tuple[Any, int]:
    """Run one spec to its end in this process, in a store under `tmp_path`: (store, run id)."""
    from engine.host import Host
    from engine.spec import load_spec
    from engine.store import Store

    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    await drive(host, timeout)
    return store, loop.run_id


def candidates(store: Any, run_id: int) -> list[dict[str, Any]]:
    """A run's candidate experiments, in order."""
    return [e for e in store.experiments(run_id) if e["kind"] == "candidate"]


def user_text(body: dict[str, Any]) -> str:
    """The first user message as one text, whether a string or a list of text blocks."""
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "\n\n".join(b.get("text", "") for b in content if b.get("type") == "text")


def judged_output(body: dict[str, Any]) -> str:
    """The output a judge request asks about."""
    turn = user_text(body)
    found = re.search(r"<output>\n(.*)\n</output>", turn, flags=re.DOTALL)
    return found[1] if found else ""


def judged_items(body: dict[str, Any]) -> list[str]:
    """The names of the questions a judge request asks."""
    system = body["system"][0]["text"]
    return re.findall(r"^- ([^:\n]+): ", system.split("Questions:", 1)[1], flags=re.MULTILINE)


def answers(pairs: list[tuple[str, str, str]], **tokens: int) -> Reply:
    """The judge's tool call: (item, answer, evidence) triples."""
    return tool_reply("record_answers", {"answers": [
        {"item": i, "answer": a, "evidence": e} for i, a, e in pairs]}, **tokens)


class Router:
    """A responder that answers by what a request asks for: a mutation (propose_change), a
    judgement (record_answers), a playbook, or plain text (an artifact producing output)."""

    def __init__(self, changes: list[Reply] = (), *,
                 judge: Callable[[dict[str, Any]], Reply] | None = None,
                 produce: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.changes: deque[Reply] = deque(changes)
        self.judge = judge
        self.produce = produce

    def __call__(self, body: dict[str, Any]) -> Reply:
        tool = (body.get("tool_choice") or {}).get("name")
        if tool == "propose_change" and self.changes:
            return self.changes.popleft()
        if tool == "record_answers" and self.judge:
            return self.judge(body)
        if tool is None and self.produce:
            return self.produce(body)
        return error_reply(500, text=f"the router has no reply for {tool or 'text'}",
                           headers={"x-should-retry": "false"})
