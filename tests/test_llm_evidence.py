"""What a run may believe: the target is reached when the best version keeps scoring it
(confirmed by re-evaluating it), a broken judge or producer pauses the run with the cause
instead of scoring, an empty page cannot look good, and an edit that would write a secret is
refused."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from fake_anthropic import (
    CTA,
    HEADLINE,
    TEST_KEY,
    FakeAnthropic,
    Router,
    answers,
    change,
    drive,
    page_spec,
    page_workspace,
    run_spec,
    text_reply,
)

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store


async def until_paused(tmp_path: Path, spec: Path) -> tuple[Store, int, str | None]:
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    task = asyncio.ensure_future(drive(host))
    try:
        deadline = time.monotonic() + 20
        while store.get_run(loop.run_id)["status"] != "paused":
            assert time.monotonic() < deadline and not task.done(), store.get_run(loop.run_id)
            await asyncio.sleep(0.05)
        alert = f"{loop.alert} | {store.get_run(loop.run_id)['stop_reason']}"
    finally:
        host.stop_all()
        await asyncio.gather(task, return_exceptions=True)
    return store, loop.run_id, alert


# ---------------------------------------------------------------- 9: the target streak


async def test_a_run_stops_within_streak_evaluations_of_its_best_reaching_the_target(
        api: FakeAnthropic, tmp_path: Path):
    """The keep that reaches the target is confirmed by re-evaluating the best version, not by
    waiting for candidates to score high: keep, re-evaluate, re-evaluate, stop."""
    ws = page_workspace(tmp_path)
    api.script(change("Number and call to action", [HEADLINE, CTA]),
               *[change(f"A worse idea {n}", [{"file": "page.md", "search": "3x",
                                               "replace": "three times"}]) for n in range(6)])
    store, run_id = await run_spec(tmp_path, page_spec(
        ws, stop="max_rounds: 10\n  target: 0.95\n  streak: 3\n  plateau: null"))
    exps = [(e["kind"], e["verdict"]) for e in store.experiments(run_id)]
    assert exps == [("baseline", "baseline"), ("candidate", "kept"),
                    ("reeval", "reevaluated"), ("reeval", "reevaluated")]
    row = store.get_run(run_id)
    assert row["stop_reason"] == ("target 0.95 reached: the best version #2 scored ≥ 0.95 in "
                                  "3 evaluations in a row")
    assert len(api.requests) == 1  # no candidate was proposed after the target was reached


async def test_a_confirmation_below_the_target_lets_the_run_climb_on(api: FakeAnthropic,
                                                                    tmp_path: Path):
    ws = page_workspace(tmp_path)
    flips = iter(["yes", "yes", "no"] + ["yes"] * 30)  # the judge's one noisy answer
    api.responder = Router([change("Number and call to action", [HEADLINE, CTA]),
                            change("Shorter", [{"file": "page.md", "search": "Our tool helps "
                                                "teams ship.", "replace": "Ship."}])],
                           judge=lambda body: answers([("clear", next(flips), "ok")]))
    evaluate = """
evaluate:
  kind: checklist
  produce: {kind: command, command: cat page.md}
  items:
    - {name: number, regex: "^#.*[0-9]"}
    - {name: cta, contains: Start your free trial}
    - name: clear
      question: Is it clear?
"""
    store, run_id = await run_spec(tmp_path, page_spec(
        ws, evaluate=evaluate, stop="max_rounds: 6\n  target: 0.95\n  streak: 2"))
    kinds = [(e["kind"], e["score"]) for e in store.experiments(run_id)]
    assert kinds[:3] == [("baseline", 1 / 3), ("candidate", 1.0), ("reeval", 2 / 3)]
    assert kinds[3][0] == "candidate"  # the streak broke: the run climbed on
    assert store.get_run(run_id)["stop_reason"].startswith("target 0.95 reached")


# ---------------------------------------------------------------- 10: broken evidence


PRODUCED = """
evaluate:
  kind: checklist
  produce: {{kind: llm, system_file: page.md, model: claude-writer, max_tokens: 300}}
  inputs: ["a bakery", "a gym"]
  samples: 2
  items:
    - name: friendly
      question: Is the tone friendly?
    - {{name: short, words: {{max: 60}}}}
    - {{name: calm, not_contains: "!!!"}}
{extra}"""


async def test_a_judge_that_never_calls_its_tool_pauses_the_run_with_the_cause(
        api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.responder = Router(produce=lambda body: text_reply("A warm welcome to you."),
                           judge=lambda body: text_reply("Looks friendly to me."))
    store, run_id, alert = await until_paused(tmp_path, page_spec(
        ws, evaluate=PRODUCED.format(extra="")))
    assert "paused: unusable evidence: the judge left 4 of 4 answers unanswered" in alert
    assert alert and "unusable evidence: the judge left 4 of 4" in alert
    [baseline] = store.experiments(run_id)
    assert baseline["verdict"] == "crashed"  # recorded with its cause, never scored
    assert baseline["score"] is None and "the judge left" in baseline["reason"]
    assert store.item_results(baseline["id"])  # the evidence is kept for the detail view


async def test_a_producer_cut_at_max_tokens_pauses_the_run(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.responder = Router(produce=lambda body: text_reply("Welcome to our", stop_reason="max_tokens"),
                           judge=lambda body: answers([("friendly", "yes", "Welcome")]))
    store, run_id, alert = await until_paused(tmp_path, page_spec(
        ws, evaluate=PRODUCED.format(extra="")))
    assert "the producer stopped at max_tokens (300) on 4 of 4 samples" in alert
    judged = [b for b in api.bodies if b.get("tools")]
    assert "[the producer stopped here: it reached max_tokens (300)]" in str(judged[0])
    outputs = [e["line"] for e in store.events(run_id) if e["line"].startswith("output for")]
    assert "(cut off at max_tokens)" in outputs[0]


async def test_an_empty_page_never_looks_good_and_empty_outputs_pause_the_run(
        api: FakeAnthropic, tmp_path: Path):
    """An empty output passes `words: {max}` and `not_contains`; it must fail every item
    instead. A candidate that empties the page is reverted; a producer that answers nothing
    twice in a row pauses the run."""
    ws = page_workspace(tmp_path)

    def produce(body: dict) -> object:
        page = body["system"][0]["text"]
        return text_reply("" if "EMPTY" in page else "A warm welcome.")

    api.responder = Router([change("Break it", [{"file": "page.md", "search": "Contact us.",
                                                 "replace": "EMPTY"}]),
                            change("Break it again", [{"file": "page.md", "search": "Our tool",
                                                       "replace": "EMPTY tool"}])],
                           produce=produce,
                           judge=lambda body: answers([("friendly", "no", "-")]))
    store, run_id, alert = await until_paused(tmp_path, page_spec(
        ws, evaluate=PRODUCED.format(extra=""), stop="max_rounds: 5"))
    baseline, first, second = store.experiments(run_id)
    assert first["verdict"] == "reverted" and first["score"] == 0.0  # not 2/3 for empty pages
    assert all(r["passed"] == 0 and r["evidence"] == "the output is empty"
               for r in store.item_results(first["id"]))
    assert second["verdict"] == "crashed"
    assert "4 of 4 produced outputs are unusable (the output is empty)" in alert


async def test_an_error_page_is_not_judged(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>"
    api.responder = Router(produce=lambda body: text_reply(page),
                           judge=lambda body: answers([("friendly", "yes", "-")]))
    store, run_id, alert = await until_paused(tmp_path, page_spec(
        ws, evaluate=PRODUCED.format(extra="")))
    assert "the output is an error page ('502 Bad Gateway')" in alert
    assert not [b for b in api.bodies if b.get("tools")]  # no judge call was paid for


# ---------------------------------------------------------------- 6: secrets in edits


async def test_an_edit_that_writes_the_api_key_is_refused(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x",
                    "--allow-empty"], cwd=ws, check=True)
    subprocess.run(["git", "add", "-A"], cwd=ws, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y"],
                   cwd=ws, check=True)
    api.script(change("Add the key", [{"file": "page.md", "search": "Contact us.",
                                       "replace": f"Contact us. key={TEST_KEY}"}]),
               change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws))
    bad, good = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert bad["verdict"] == "invalid"
    assert "would write the API key in use into page.md; refused" in bad["reason"]
    assert good["verdict"] == "kept"
    assert TEST_KEY not in (ws / "page.md").read_text()
    log = subprocess.run(["git", "log", "-p", "--all"], cwd=ws, capture_output=True, text=True)
    assert TEST_KEY not in log.stdout
    for path in tmp_path.glob("ar.db*"):
        assert TEST_KEY.encode() not in path.read_bytes()


async def test_an_edit_that_writes_an_ssh_identity_is_refused(api: FakeAnthropic,
                                                             tmp_path: Path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    (home / ".ssh" / "id_ed25519").write_text(
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n")
    monkeypatch.setenv("HOME", str(home))
    ws = page_workspace(tmp_path)
    api.script(change("Add a key", [{"file": "page.md", "search": "Contact us.",
                                     "replace": f"Contact us.\n{body}"}]))
    store, run_id = await run_spec(tmp_path, page_spec(ws, stop="max_rounds: 1"))
    [bad] = [e for e in store.experiments(run_id) if e["kind"] == "candidate"]
    assert bad["verdict"] == "invalid"
    assert "an SSH private key" in bad["reason"] and "id_ed25519" in bad["reason"]
    assert body not in bad["reason"]
    assert body not in (ws / "page.md").read_text()


async def test_the_app_says_why_a_run_is_paused(tmp_path: Path):
    """An outage's alert is the run's stop_reason; the app's status line shows it (made
    printable: it carries a server's words)."""
    from tui.app import make_app
    from tui.fixtures import build_store
    from tui.status_line import StatusLine

    db = tmp_path / "fixed.db"
    store = build_store(db, runs=1, experiments=10)
    [row] = store.runs()
    store.update_run(row["id"], status="paused", stop_reason="paused: API outage: llm mutator: "
                     "the Anthropic API failed 5 times; last: 529 \x1b[2Joverloaded; trying "
                     "again in 30s")
    store.close()
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause()
        text = app.dash.query_one(StatusLine).text
    assert "API outage" in text and "trying again in 30s" in text
    assert "\x1b" not in text
