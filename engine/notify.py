"""Tell a person when it matters: `notify:` hooks on a new best, a run finished, an alert.

A hook is a command (the event as JSON on stdin) or a webhook URL (an HTTP POST of the same
JSON; ntfy and Slack incoming webhooks accept it). Each hook is rate-limited per event kind
(events in between are counted and the next one says how many were held back); a hook that
fails is logged as a warning in the run's events and never stops or slows a run: hooks run
in tasks of their own, with a timeout.

The host calls `Notifications.changed(loop)` whenever a run tells it something changed;
what changed is found here (best version, alert, stop), so the loop knows nothing of hooks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.text import printable

BEST, FINISHED, ALERT = "best", "finished", "alert"


class NotifyHook(BaseModel):
    """Where events go (engine/notify.py): a command (the event JSON on stdin) or a webhook."""

    model_config = ConfigDict(extra="forbid")  # a typo must never be silently ignored

    command: str | None = None
    url: str | None = None
    #: The webhook URL read from this environment variable (a URL holding a token).
    url_env: str | None = None
    #: Which events (not `on:`, which YAML reads as true).
    events: list[Literal["best", "finished", "alert"]] = ["best", "finished", "alert"]
    #: At most one event of a kind per this many seconds (a run's end is always sent).
    min_interval_s: float = Field(default=60, ge=0)
    timeout_s: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> NotifyHook:
        given = [k for k in ("command", "url", "url_env") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give one of `command`, `url` or `url_env`")
        if self.url and not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"{self.url!r} is not an http(s) URL")
        return self


@dataclass
class _Watch:
    """What was last seen of one run, and each hook's rate-limit state."""

    spec: Any
    best_id: int | None = None
    alert: str | None = None
    finished: bool = False
    last_sent: dict[tuple[int, str], float] = field(default_factory=dict)
    held: dict[tuple[int, str], int] = field(default_factory=dict)


class Notifications:
    """Sends one host's runs' events to their spec's hooks."""

    def __init__(self, store) -> None:
        self.store = store
        self.watches: dict[int, _Watch] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.clock = time.monotonic

    def watch(self, run_id: int, spec) -> None:
        if spec.notify:
            self.watches[run_id] = _Watch(spec)

    def changed(self, loop) -> None:
        """Look at a run that changed; send an event for what is new."""
        w = self.watches.get(loop.run_id)
        if w is None:
            return
        best = loop.versions.best
        if best is not None and best.exp_id != w.best_id:
            if w.best_id is not None:  # the baseline is where a run starts, not news
                run = self.store.get_run(loop.run_id) or {}
                self.emit(loop.run_id, w, BEST, {
                    "experiment": best.exp_id, "score": run["best_score"],
                    "baseline": run["baseline_score"]})
            w.best_id = best.exp_id
        if loop.alert != w.alert:
            w.alert = loop.alert
            if loop.alert:
                self.emit(loop.run_id, w, ALERT, {"alert": loop.alert})
        if loop.stop_reason is not None and not w.finished:
            w.finished = True
            run = self.store.get_run(loop.run_id) or {}
            self.emit(loop.run_id, w, FINISHED, {
                "reason": loop.stop_reason, "failed": loop.failed,
                "score": run.get("best_score"), "baseline": run.get("baseline_score")})

    def emit(self, run_id: int, w: _Watch, kind: str, data: dict) -> None:
        now = self.clock()
        for index, hook in enumerate(w.spec.notify):
            if kind not in hook.events:
                continue
            key = (index, kind)
            last = w.last_sent.get(key)
            # A run's end is always told; news and alerts at most once per interval.
            if kind != FINISHED and last is not None and now - last < hook.min_interval_s:
                w.held[key] = w.held.get(key, 0) + 1
                continue
            w.last_sent[key] = now
            event = {"event": kind, "run": w.spec.name, "time": time.time(), **data,
                     "held_back": w.held.pop(key, 0)}
            task = asyncio.get_running_loop().create_task(self._send(run_id, hook, event))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, run_id: int, hook, event: dict) -> None:
        body = json.dumps(event, default=str)
        try:
            if hook.command:
                await run_command(hook.command, body, hook.timeout_s)
            else:
                await asyncio.to_thread(post, hook_url(hook), body, hook.timeout_s)
        except Exception as exc:  # a hook's failure is told, never raised into a run
            try:
                self.store.add_event(run_id, f"notify {describe(hook)}: {event['event']} "
                                     f"not delivered: {printable(str(exc))[:300]}",
                                     level="warning", source="notify")
            except Exception:
                pass

    async def close(self, grace_s: float = 5.0) -> None:
        """Let the hooks in flight finish (a run's end is worth waiting a moment for)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_s)
        for task in list(self.tasks):
            task.cancel()


def hook_url(hook) -> str:
    url = hook.url or os.environ.get(hook.url_env or "", "")
    if not url:
        raise RuntimeError(f"${hook.url_env} is not set")
    return url


def describe(hook) -> str:
    """A hook as it may be logged: a URL's host only (its path may hold a token)."""
    if hook.command:
        return f"command {hook.command.split()[0]!r}"
    if hook.url_env:
        return f"${hook.url_env}"
    return f"webhook {urllib.parse.urlsplit(hook.url).netloc}"


async def run_command(command: str, body: str, timeout: float) -> None:
    proc = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        _, err = await asyncio.wait_for(proc.communicate(body.encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"exited {proc.returncode}: {tail[0]}")


def post(url: str, body: str, timeout: float) -> None:
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"cannot reach it: {reason}") from None
