"""A server that misbehaves on purpose: invalid UTF-8, hanging replies, crashes among
concurrent calls, retries, repeats and stops. Whatever it sends is an experiment's outcome,
a stop stops at once, and the money adds up: the run's total equals the sum over its
experiments equals what the server billed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli_env
from fake_anthropic import (
    CTA,
    HEADLINE,
    PRICE_TABLE,
    PRICES,
    FakeAnthropic,
    Router,
    answers,
    change,
    drive,
    error_reply,
    hang,
    judged_items,
    page_spec,
    page_workspace,
    raw_reply,
    run_spec,
    text_reply,
)

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store


def produced(inputs: str = '["a bakery", "a gym"]', samples: int = 2, concurrency: int = 4,
             extra: str = "") -> str:
    """A checklist whose pages come from a model and are judged by one (same prices)."""
    return f"""
evaluate:
  kind: checklist
  produce:
    kind: llm
    system_file: page.md
    model: claude-writer
    max_retries: 1
    retry_backoff_s: 0.01
    prices: {PRICES}
  inputs: {inputs}
  samples: {samples}
  concurrency: {concurrency}
  items:
    - {{name: number, regex: "[0-9]"}}
    - name: friendly
      question: Is the tone friendly?
  judge: {{max_retries: 1, retry_backoff_s: 0.01, prices: {PRICES}}}
{extra}"""


def page_of(body: dict) -> str:
    return body["system"][0]["text"]


def assert_money_adds_up(store: Store, run_id: int, api: FakeAnthropic) -> None:
    """The run's total = the sum over its experiments = what the server billed."""
    exps = store.experiments(run_id)
    total = store.get_run(run_id)["cost_usd"]
    assert sum(e["cost_usd"] or 0 for e in exps) == pytest.approx(total, abs=1e-12)
    assert api.billed_usd(PRICE_TABLE) == pytest.approx(total, abs=1e-12)
    billed = api.billed_tokens()
    assert sum(e["tokens_in"] or 0 for e in exps) == billed["input_tokens"]
    assert sum(e["tokens_out"] or 0 for e in exps) == billed["output_tokens"]
    assert not store.in_flight(run_id)  # nothing is left running
    # The call journal (engine/calls.py) agrees: every call is counted by an experiment,
    # what came back is what was billed, nothing is estimated or pending.
    calls = store._rows("SELECT * FROM calls WHERE run_id = ?", [run_id])
    assert all(c["accounted"] for c in calls)
    assert {c["state"] for c in calls} <= {"done", "failed"}
    assert sum(c["cost_usd"] for c in calls) == pytest.approx(total, abs=1e-12)


# ---------------------------------------------------------------- 5: any reply is an outcome


async def test_invalid_utf8_from_the_producer_crashes_that_candidate_not_the_engine(
        api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)

    def produce(body: dict) -> object:
        if "3x" in page_of(body):  # the candidate's pages come back as invalid UTF-8
            return raw_reply(b'{"content": [{"type": "text", "text": "\xff\xfe"}]}')
        return text_reply("Welcome to a friendly place", tokens_in=20, tokens_out=5)

    api.responder = Router([change("Put a number in the headline", [HEADLINE]),
                            change("Ask for the click", [CTA])], produce=produce,
                           judge=lambda body: answers([("friendly", "yes", "Welcome")]))
    store, run_id = await run_spec(tmp_path, page_spec(ws, evaluate=produced(concurrency=1)))
    first, second = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert first["verdict"] == "crashed"
    assert "UnicodeDecodeError" in first["reason"] and "llm producer" in first["reason"]
    assert second["verdict"] in ("kept", "reverted")  # the loop went on
    assert store.get_run(run_id)["status"] == "done"
    assert_money_adds_up(store, run_id, api)


async def test_one_garbled_judge_reply_leaves_that_output_unanswered(api: FakeAnthropic,
                                                                     tmp_path: Path):
    ws = page_workspace(tmp_path)
    replies = iter([raw_reply(b"\xff not json"), *[answers([("friendly", "yes", "Hi")])] * 20])
    api.responder = Router([change("Put a number in the headline", [HEADLINE])],
                           produce=lambda body: text_reply("Hi friend", tokens_in=10),
                           judge=lambda body: next(replies))
    store, run_id = await run_spec(tmp_path, page_spec(ws, evaluate=produced(concurrency=1),
                                                       stop="max_rounds: 1"))
    baseline = store.experiments(run_id)[0]
    unanswered = [r for r in store.item_results(baseline["id"]) if r["passed"] is None]
    assert len(unanswered) == 1
    assert "unreadable reply from the API" in unanswered[0]["evidence"]
    assert store.get_run(run_id)["status"] == "done"


async def test_a_prompt_too_long_for_the_api_is_that_candidates_verdict(api: FakeAnthropic,
                                                                        tmp_path: Path):
    """A candidate that grows the skill past what the API takes gets a 400: its own verdict,
    not a pause of the run (and not a retry)."""
    ws = page_workspace(tmp_path)

    def produce(body: dict) -> object:
        if "HUGE" in page_of(body):
            return error_reply(400, "invalid_request_error",
                               "prompt is too long: 215000 tokens > 200000 maximum")
        return text_reply("Hello friend", tokens_in=20, tokens_out=5)

    api.responder = Router([change("Make it huge", [{"file": "page.md", "search": "Contact us.",
                                                     "replace": "HUGE " * 50}]),
                            change("Put a number in the headline", [HEADLINE])],
                           produce=produce, judge=lambda body: answers([("friendly", "no", "-")]))
    store, run_id = await run_spec(tmp_path, page_spec(ws, evaluate=produced(concurrency=1)))
    first, second = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert first["verdict"] == "invalid"
    assert "the API refused this request: 400 invalid_request_error: prompt is too long" \
        in first["reason"]
    assert second["verdict"] in ("kept", "reverted")
    assert store.get_run(run_id)["status"] == "done"
    assert sum(1 for b in api.bodies if "HUGE" in str(b.get("system"))) == 1  # not retried


async def test_terminal_escapes_in_a_reply_are_stored_as_data(api: FakeAnthropic,
                                                              tmp_path: Path):
    """The stand-in can send escape sequences; the store keeps them as text (displays make
    them printable with engine.text.printable), never anything worse."""
    from fake_anthropic import HOSTILE_TEXT

    from engine.text import printable

    ws = page_workspace(tmp_path)
    api.script(change(HOSTILE_TEXT, [HEADLINE], rationale=HOSTILE_TEXT))
    store, run_id = await run_spec(tmp_path, page_spec(ws, stop="max_rounds: 1"))
    [cand] = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert cand["description"] == " ".join(HOSTILE_TEXT.split())
    shown = printable(cand["description"], one_line=True)
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert cand["rationale"] == HOSTILE_TEXT  # kept whole, as data


async def test_the_detail_header_shows_the_rationale_beside_the_verdicts_reason(
        api: FakeAnthropic, tmp_path: Path):
    from tui.experiment_screen import ExperimentScreen

    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE],
                      rationale="the number item fails\x1b[2J on every output"),
               change("Say it again", [{"file": "page.md", "search": "Contact us.",
                                        "replace": "Contact us. Contact us."}],
                      rationale="more is more"))
    store, run_id = await run_spec(tmp_path, page_spec(ws))
    second = [e for e in store.experiments(run_id) if e["kind"] == "candidate"][-1]

    def top(exp_id: int) -> str:  # the head line and, under it, what was tried and why
        screen = ExperimentScreen(store, exp_id, "maximize")
        return f"{screen._head()}\n{screen._about()}"

    head = top(second["id"])
    assert "rationale: more is more" in head
    assert f"why: {second['reason']}" in head
    first = [e for e in store.experiments(run_id) if e["kind"] == "candidate"][0]
    assert "rationale: the number item fails␛[2J on every output" in top(first["id"])


# ---------------------------------------------------------------- 2: siblings are cancelled


async def test_a_failing_call_cancels_its_siblings_and_what_they_cost_is_counted(
        api: FakeAnthropic, tmp_path: Path):
    """Four pages are produced at once; one comes back unreadable while two hang. The
    candidate is recorded crashed at once, the hanging calls are abandoned (never billed),
    no request arrives after the record, and the page that did arrive is paid for."""
    ws = page_workspace(tmp_path)
    calls: list[str] = []

    def produce(body: dict) -> object:
        if "3x" not in page_of(body):
            return text_reply("Hello friend", tokens_in=30, tokens_out=7)
        calls.append(body["messages"][0]["content"])
        n = len(calls)
        if n == 1:
            return text_reply("Hello 2 friends", tokens_in=31, tokens_out=8)
        if n == 2:
            time.sleep(0.3)  # after the first one is in
            return raw_reply(b"\xff")
        return hang(20)

    api.responder = Router([change("Put a number in the headline", [HEADLINE])],
                           produce=produce, judge=lambda body: answers([("friendly", "no", "-")]))
    started = time.monotonic()
    store, run_id = await run_spec(tmp_path, page_spec(ws, evaluate=produced(concurrency=4),
                                                       stop="max_rounds: 1"))
    assert time.monotonic() - started < 8  # not the 20 s the hanging calls would take
    [cand] = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert cand["verdict"] == "crashed" and "UnicodeDecodeError" in cand["reason"]
    assert cand["finished"] >= max(r["at"] for r in api.requests) - time.monotonic() + time.time()
    assert cand["tokens_in"] >= 31  # the page that arrived (and its judgement) is counted
    assert_money_adds_up(store, run_id, api)


# ---------------------------------------------------------------- 1: money adds up


async def test_money_adds_up_under_repeats_reevaluations_retries_crashes_and_a_stop(
        api: FakeAnthropic, tmp_path: Path):
    """Noise repeats of the baseline, re-evaluations of the best, a 529 retried, a crash,
    a mutator reply that is invalid, and a stop in the middle of an evaluation."""
    ws = page_workspace(tmp_path)
    state = {"produced": 0}
    stop_now = asyncio.Event()

    def produce(body: dict) -> object:
        state["produced"] += 1
        n = state["produced"]
        if n == 5:
            return error_reply(529, "overloaded_error", "Overloaded")  # retried once
        if "free trial" in page_of(body):
            if n % 2:
                return hang(20)  # the stop comes while this hangs
            stop_now.set()
            return text_reply("Start 1 trial", tokens_in=41, tokens_out=3)
        if "again" in page_of(body):
            return raw_reply(b"\xff")  # a crash
        return text_reply("Hello friend", tokens_in=30 + n, tokens_out=7)

    api.responder = Router([
        change("Put a number in the headline", [HEADLINE], tokens_in=500, tokens_out=60),
        text_reply("no tool here", tokens_in=400, tokens_out=9),
        change("Say it again", [{"file": "page.md", "search": "ship.", "replace": "ship again."}],
               tokens_in=510, tokens_out=61),
        change("Ask for the click", [CTA], tokens_in=520, tokens_out=62)],
        produce=produce,
        judge=lambda body: answers([(i, "yes", "ok") for i in judged_items(body)],
                                   tokens_in=70, tokens_out=11))
    spec = page_spec(ws, evaluate=produced(inputs='["a bakery"]', concurrency=2) + """
decide: {noise_repeats: 2, reeval_every: 1}
""", stop="max_rounds: 20", prices=PRICES)
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    task = asyncio.ensure_future(drive(host))
    try:
        await asyncio.wait_for(stop_now.wait(), 20)
        await asyncio.sleep(0.2)
        host.stop_all()
        await asyncio.wait_for(task, 5)
    finally:
        host.stop_all()
        await asyncio.gather(task, return_exceptions=True)
    verdicts = [e["verdict"] for e in store.experiments(loop.run_id)]
    assert "baseline" in verdicts and "invalid" in verdicts and "crashed" in verdicts
    assert verdicts[-1] == "interrupted"
    assert any(e["kind"] == "reeval" for e in store.experiments(loop.run_id))
    assert_money_adds_up(store, loop.run_id, api)


# ---------------------------------------------------------------- 7: stops that stop


async def test_a_stop_cancels_a_hanging_mutator_call_at_once(api: FakeAnthropic,
                                                             tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.responder = lambda body: hang(60)
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(page_spec(ws, timeout=600, retries=4)))
    task = asyncio.ensure_future(drive(host))
    deadline = time.monotonic() + 15
    while not api.requests:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    host.stop_all()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2
    last = store.experiments(loop.run_id)[-1]
    assert (last["kind"], last["verdict"]) == ("candidate", "interrupted")
    assert "while the mutator was proposing" in last["reason"]
    assert store.get_run(loop.run_id)["status"] == "stopped"
    assert len(api.requests) == 1  # no retry after the stop


def test_sigterm_against_a_hanging_judge_exits_within_two_seconds(tmp_path: Path):
    """(Ctrl-C is the same handler: engine/cli.py registers it for SIGINT and SIGTERM.)"""
    sig = signal.SIGTERM
    ws = page_workspace(tmp_path)
    spec = page_spec(ws, evaluate=produced(inputs='["a bakery"]', concurrency=1),
                     stop="max_rounds: 3")
    db = tmp_path / "ar.db"
    with FakeAnthropic(Router([change("Put a number in the headline", [HEADLINE])],
                              produce=lambda body: text_reply("Hi 1 friend"),
                              judge=lambda body: hang(60))) as server:
        env = cli_env(**server.env())
        proc = subprocess.Popen([sys.executable, "-m", "tui", "run", str(spec), "--headless",
                                 "--db", str(db)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120  # (a loaded machine starts Python slowly)
            while not any(b.get("tool_choice", {}).get("name") == "record_answers"
                          for b in server.bodies):  # the judge is hanging
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.2)
            started = time.monotonic()
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=10)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
    assert took < 2, (took, err)
    assert "Traceback" not in err
    store = Store(db, readonly=True)
    [run] = store.runs()
    last = store.experiments(run["id"])[-1]
    assert last["verdict"] == "interrupted"
    assert not store.in_flight(run["id"])
    assert run["status"] == "stopped"
