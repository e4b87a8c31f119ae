"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

Tests point `ANTHROPIC_BASE_URL` at it. It records every request (path, headers, JSON body)
and answers from a scripted queue of replies; when the queue is empty it asks an optional
`responder(body)` function, and failing that answers with a non-retryable 500 so a test
that forgot a reply fails loudly instead of hanging. Network only on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
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
    #: Seconds to wait before answering (to provoke client timeouts).
    delay: float = 0.0


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


def text_reply(text: str, **tokens: int) -> Reply:
    return message([{"type": "text", "text": text}], **tokens)


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

    def __init__(self, responder: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.responder = responder
        self._lock = threading.Lock()
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
                    threading.Event().wait(reply.delay)
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.send_header("request-id", "req_test")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: Any) -> None:
                pass

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

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------- runs against the fake server

#: The key tests export; the server sees it, nothing we store may.
TEST_KEY = "sk-ant-test-key-0123456789abcdef"

PRICES = "{input: 3, output: 15, cache_write: 3.75, cache_read: 0.3}"


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


def judged_output(body: dict[str, Any]) -> str:
    """The output a judge request asks about."""
    turn = body["messages"][0]["content"]
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
