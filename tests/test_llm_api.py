"""When the API misbehaves: rate limits, overload, server errors, timeouts, refusals, no key.
Retries back off; repeated failure pauses the run (others go on) until it is resumed; the
key never reaches the store, events or exports."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import pytest
from conftest import cli_env, metric_spec, run_cli
from fake_anthropic import (
    HEADLINE,
    FakeAnthropic,
    Router,
    answers,
    change,
    drive,
    error_reply,
    judged_items,
    page_spec,
    page_workspace,
    run_spec,
    text_reply,
)

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store


async def wait_for(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_rate_limit_is_retried_after_the_wait_the_server_asks(api: FakeAnthropic,
                                                                    tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(error_reply(429, "rate_limit_error", "slow down", {"retry-after": "0.3"}),
               change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws, stop="max_rounds: 1"))

    first, second = api.requests
    assert second["at"] - first["at"] >= 0.3  # retry-after was honoured
    [cand] = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert cand["verdict"] == "kept"
    assert store.get_run(run_id)["status"] == "done"


async def test_overload_and_server_errors_are_retried_with_backoff(api: FakeAnthropic,
                                                                  tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(error_reply(529, "overloaded_error", "Overloaded"),
               error_reply(500, "api_error", "Internal server error"),
               error_reply(503, "api_error", "unavailable"),
               change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws, stop="max_rounds: 1", retries=3))
    assert len(api.requests) == 4
    [cand] = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert cand["verdict"] == "kept"


async def test_a_timeout_is_retried(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    slow = change("Too late", [HEADLINE])
    slow.delay = 2.0
    api.script(slow, change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws, stop="max_rounds: 1", timeout=0.5))
    [cand] = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert cand["description"] == "Put a number in the headline"


async def test_an_outage_pauses_the_run_says_so_and_is_retried_on_a_schedule(
        api: FakeAnthropic, tmp_path: Path, params_workspace: Path):
    """Every retry fails: no experiment is recorded (an outage is not a bad idea), the run
    pauses with the cause in its alert, an error event and its stop_reason, the other run
    goes on, and the run tries again by itself — after a longer wait each time."""
    api.responder = lambda body: error_reply(500, "api_error", "Internal server error")
    ws = page_workspace(tmp_path / "llm")
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    llm = host.add(load_spec(page_spec(ws, stop="max_rounds: 2",
                                       mutator="  outage_retry_s: 1\n  outage_retry_max_s: 2")))
    other = host.add(load_spec(metric_spec(params_workspace, stop="max_rounds: 3")))
    alerts: list[str] = []
    host.listeners.append(lambda: llm.alert and (not alerts or alerts[-1] != llm.alert)
                          and alerts.append(llm.alert))
    task = asyncio.ensure_future(drive(host))
    try:
        await wait_for(lambda: store.get_run(llm.run_id)["status"] == "paused")
        run = store.get_run(llm.run_id)
        assert run["stop_reason"].startswith(
            "paused: API outage: llm mutator: the Anthropic API failed 2 times")
        assert "500 api_error: Internal server error" in run["stop_reason"]
        assert run["stop_reason"].endswith("trying again in 1s")
        assert llm.alert and llm.alert.startswith("paused: API outage")
        assert [e["kind"] for e in store.experiments(llm.run_id)] == ["baseline"]
        errors = [e["line"] for e in store.events(llm.run_id) if e["level"] == "error"]
        assert any(line.startswith("paused: API outage: llm mutator") for line in errors)
        await wait_for(lambda: store.get_run(other.run_id)["status"] == "done")
        assert store.get_run(other.run_id)["rounds"] == 3  # the other run went on

        # It tries again by itself, twice more (1 s, then 2 s later), still down...
        await wait_for(lambda: len(api.requests) >= 6, timeout=10)
        first, second, third = (api.requests[i]["at"] for i in (1, 3, 5))
        assert second - first >= 1 and third - second >= 2
        # ...then the API is back and the run finishes without a person.
        api.responder = None
        api.script(change("Put a number in the headline", [HEADLINE]),
                   change("Say it again", [{"file": "page.md", "search": "Contact us.",
                                            "replace": "Contact us today."}]))
        await asyncio.wait_for(task, 20)
    finally:
        host.stop_all()
        await asyncio.gather(task, return_exceptions=True)
    run = store.get_run(llm.run_id)
    assert run["status"] == "done" and run["stop_reason"] == "max rounds (2) reached"
    verdicts = [e["verdict"] for e in store.experiments(llm.run_id)]
    assert "invalid" not in verdicts and verdicts[1] == "kept"
    assert any("API outage" in a for a in alerts)


async def test_a_person_can_resume_a_run_paused_by_an_outage(api: FakeAnthropic,
                                                           tmp_path: Path):
    api.responder = lambda body: error_reply(529, "overloaded_error", "Overloaded")
    ws = page_workspace(tmp_path)
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(page_spec(ws, stop="max_rounds: 1")))  # next try in 30 s
    task = asyncio.ensure_future(drive(host))
    try:
        await wait_for(lambda: store.get_run(loop.run_id)["status"] == "paused")
        api.responder = None
        api.script(change("Put a number in the headline", [HEADLINE]))
        await store.send_command(loop.run_id, "resume")
        await asyncio.wait_for(task, 20)
    finally:
        host.stop_all()
        await asyncio.gather(task, return_exceptions=True)
    assert store.get_run(loop.run_id)["status"] == "done"


async def test_a_refused_request_pauses_at_once(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(error_reply(401, "authentication_error", "invalid x-api-key"))
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(page_spec(ws, retries=3)))
    task = asyncio.ensure_future(drive(host))
    try:
        await wait_for(lambda: store.get_run(loop.run_id)["status"] == "paused")
        reason = store.get_run(loop.run_id)["stop_reason"]
    finally:
        host.stop_all()
        await asyncio.gather(task, return_exceptions=True)
    assert len(api.requests) == 1  # a 401 is not retried
    assert "refused the request: 401 authentication_error: invalid x-api-key" in reason


def test_without_a_key_run_says_so_in_one_line(tmp_path: Path):
    spec = page_spec(page_workspace(tmp_path))
    result = run_cli("run", str(spec), "--headless", "--db", str(tmp_path / "ar.db"),
                     env=cli_env())
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "ANTHROPIC_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr
    check = run_cli("check", str(spec), env=cli_env())
    assert check.returncode == 0
    assert "ANTHROPIC_API_KEY is not set; `run` will refuse this spec" in check.stderr


async def test_api_key_never_reaches_store_events_or_exports(
        api: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    """The headless run and the exports as the CLI runs them, in this process (an engine
    subprocess would spend seconds importing the SDK for nothing this test looks at)."""
    from engine.cli import cmd_export
    from engine.headless import run_headless

    marker = "sk-ant-MARKER-7f3a9c1e5b2d4f60"
    monkeypatch.setenv("ANTHROPIC_API_KEY", marker)
    ws = page_workspace(tmp_path)
    spec = page_spec(ws, evaluate="""
evaluate:
  kind: checklist
  produce: {kind: command, command: cat page.md}
  items:
    - {name: number, regex: "^#.*[0-9]"}
    - name: clear
      question: Is the page clear to a first-time visitor?
    - {name: short, words: {max: 60}}
""", stop="max_rounds: 2")
    # A model that repeats the key back: in a garbage reply, a description, a judge's evidence.
    api.responder = Router([text_reply(f"Sure! Your key is {marker}."),
                            change(f"Put a number in the headline ({marker})", [HEADLINE],
                                   rationale=f"the key {marker} says so")],
                           judge=lambda body: answers([(n, "yes", f"it says {marker}")
                                                       for n in judged_items(body)]))
    db = tmp_path / "ar.db"
    out, err = io.StringIO(), io.StringIO()
    assert await run_headless(db, [str(spec)], out, err=err) == 0, err.getvalue()
    auth = {r["headers"].get("Authorization") for r in api.requests}
    assert auth == {f"Bearer {marker}"}  # the key did reach the API (and only the API)
    outputs = [out.getvalue(), err.getvalue()]
    for fmt in ("md", "tsv", "jsonl"):
        exported = io.StringIO()
        assert cmd_export(db, "page", fmt, None, exported) == 0
        outputs.append(exported.getvalue())
    outputs += list(capsys.readouterr())
    store = Store(db, readonly=True)
    events = json.dumps(store.events(limit=10_000))
    experiments = json.dumps(list(store.iter_experiments(1)))
    assert "[redacted]" in experiments  # the echoes were there, and were scrubbed
    for text in [*outputs, events, experiments]:
        assert marker not in text
    for path in tmp_path.glob("ar.db*"):
        assert marker.encode() not in path.read_bytes(), path


def test_prices_come_from_the_spec_or_the_model_family():
    from engine.llm import prices_for, usage_of
    from engine.model import UserError
    from engine.spec import LLMSettings

    haiku = prices_for(LLMSettings(model="claude-haiku-4-5"))
    assert haiku == {"input": 1.0, "output": 5.0, "cache_write": 1.25, "cache_read": 0.1,
                     "cache_write_1h": 2.0}
    mine = prices_for(LLMSettings(model="claude-haiku-4-5", prices={"input": 2, "output": 8}))
    assert mine == {"input": 2, "output": 8, "cache_write": 2.5, "cache_read": 0.2,
                    "cache_write_1h": 4.0}
    with pytest.raises(UserError, match="unknown key"):
        prices_for(LLMSettings(prices={"inptu": 3}))

    class Raw:  # the API's usage block: input_tokens excludes the cached tokens
        input_tokens, output_tokens = 10, 20
        cache_creation_input_tokens, cache_read_input_tokens = 1000, 5000

    usage = usage_of(Raw(), haiku)
    assert usage.cost_usd == pytest.approx((10 * 1 + 20 * 5 + 1000 * 1.25 + 5000 * 0.1) / 1e6)


async def test_a_spec_base_url_wins_over_the_environment(api: FakeAnthropic, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]))
    spec = page_spec(ws, stop="max_rounds: 1", mutator=f"  base_url: {api.url}")
    store, run_id = await run_spec(tmp_path, spec)
    assert len(api.requests) == 1
    assert store.get_run(run_id)["best_score"] > store.get_run(run_id)["baseline_score"]


def test_check_warns_that_a_temperature_is_not_sent_under_the_new_api_version(
        tmp_path: Path, api_key: str):
    from engine.llm import llm_warnings

    ws = page_workspace(tmp_path)
    warm = load_spec(page_spec(ws, "warm", mutator="  temperature: 0.7"))
    assert any("mutator: temperature is not sent under API version 2026-10-21" in w
               for w in llm_warnings(warm))
    old = load_spec(page_spec(ws, "old", mutator='  temperature: 0.7\n  api_version: "2023-06-01"'))
    assert llm_warnings(old) == []
    odd = page_spec(ws, "odd", prices="null")
    odd.write_text(odd.read_text().replace("claude-sonnet-test", "claude-mythos-5"))
    unknown = load_spec(odd)
    assert any("no `prices` for model 'claude-mythos-5'" in w for w in llm_warnings(unknown))
