"""What the mutator's prompt carries: banned and pinned ideas, the person's guidance, recent
attempts whole and older ones summarised, failing items with the judge's evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_anthropic import (
    HEADLINE,
    FakeAnthropic,
    change,
    drive,
    page_spec,
    page_workspace,
    user_text,
)

from engine.host import Host
from engine.model import Proposal
from engine.mutators.prompt import build_prompt, describe_evaluation
from engine.spec import load_spec, parse_spec
from engine.store import Store

CTA = {"file": "page.md", "search": "Contact us.", "replace": "Start your free trial."}


async def run_rounds(tmp_path: Path, ws: Path, rounds: int) -> tuple[Store, Host, int]:
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(page_spec(ws, stop=f"max_rounds: {rounds}")))
    await drive(host)
    return store, host, loop.run_id


async def test_vetoed_idea_is_banned_from_next_prompt(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Shout the headline in capitals", [HEADLINE]))
    store, host, run_id = await run_rounds(tmp_path, ws, 1)
    [kept] = [e for e in store.experiments(run_id) if e["verdict"] == "kept"]
    assert "reverted" in await host.loops[run_id].veto(kept["id"])
    assert (ws / "page.md").read_text().startswith("# Grow faster")  # the veto reverted it

    api.script(change("Add the free-trial call to action", [CTA]))
    await run_rounds(tmp_path, ws, 2)  # the same run, resumed
    turn = user_text(api.bodies[-1])
    assert "BANNED ideas (vetoed by the person): never try these or anything like them:\n" \
           f"- #{kept['id']}: Shout the headline in capitals" in turn
    assert f"#{kept['id']} round 1 · vetoed [BANNED]" in turn


async def test_guidance_from_the_person_reaches_the_next_prompt(api: FakeAnthropic,
                                                                tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]))
    store, _, run_id = await run_rounds(tmp_path, ws, 1)
    for note in ("Keep the tone calm", "Mention the 14-day trial"):
        command = await store.send_command(run_id, "guide", argument=note)
        store.mark_applied(command, "guidance noted")

    api.script(change("Add the free-trial call to action", [CTA]))
    await run_rounds(tmp_path, ws, 2)
    turn = user_text(api.bodies[-1])
    assert ("Guidance from the person steering this run (follow it; newest last):\n"
            "- Keep the tone calm\n- Mention the 14-day trial") in turn


def row(n: int, verdict: str = "reverted", **fields) -> dict:
    base = {"id": n, "round": n, "kind": "candidate", "verdict": verdict,
            "description": f"idea {n}", "rationale": f"because {n}", "diff": f"-old {n}\n+new {n}\n",
            "score": 0.5, "delta": -0.1, "reason": "worse by 0.1"}
    return {**base, **fields}


@pytest.fixture
def spec(tmp_path: Path):
    ws = page_workspace(tmp_path)
    return load_spec(page_spec(ws), check_files=False)


def test_recent_attempts_are_whole_and_older_ones_summarised(spec):
    rows = [row(1, "baseline", kind="baseline", description="baseline", delta=None)]
    rows += [row(n) for n in range(2, 32)]
    prompt = build_prompt(spec, Proposal("page", {"page.md": "x"}, rows, [], [], 0.5), recent=5)
    turn = prompt.user()
    # The boundary moves 8 attempts at a time: 24 one-line, the newest 7 whole.
    assert "Older attempts (24), one line each:" in turn
    assert "- #2 reverted -0.1: idea 2" in turn
    assert "Recent attempts, whole (verdict, reason, rationale, diff), oldest first:" in turn
    assert "#31 round 31 · reverted · score 0.5 (-0.1) · worse by 0.1\n    change: idea 31\n" \
           "    why: because 31\n    diff:\n      -old 31\n      +new 31" in turn
    assert "change: idea 25" in turn and "change: idea 24" not in turn


def test_the_history_is_append_only_so_it_is_next_rounds_cached_prefix(spec):
    """Round after round, the history blocks of one round are a prefix of the next round's
    (only every COMPACT_STEP rounds is it compacted), and the whole attempts stay within
    the token budget however large their diffs."""
    from engine.mutators.prompt import COMPACT_STEP, HISTORY_TOKENS

    rows = [row(1, "baseline", kind="baseline", description="baseline", delta=None)]
    rewrites = 0
    before: list[str] = []
    for n in range(2, 60):
        rows.append(row(n, diff="".join(f"-old line {n}.{k}\n+new line {n}.{k}\n"
                                        for k in range(40 if n % 3 else 2))))
        history = build_prompt(spec, Proposal("page", {}, rows, [], [], 0.5), recent=5).history
        if history[:len(before)] != before:
            rewrites += 1
        before = history
        whole = history[history.index(next(h for h in history if h.startswith("Recent"))) + 1:]
        assert sum(len(h) for h in whole) // 4 <= HISTORY_TOKENS
    assert rewrites <= 58 // COMPACT_STEP + 1


def test_an_interrupted_attempt_is_not_shown_as_a_bad_idea(spec):
    rows = [row(2, "interrupted", reason="not scored: API outage", score=None, delta=None)]
    text = build_prompt(spec, Proposal("page", {}, rows, [], [], 0.5)).user()
    assert "not scored (a stop or an outage): it may be proposed again" in text


def test_float_noise_in_a_delta_prints_as_zero(spec):
    rows = [row(2, delta=-1.1102230246251565e-16)]
    text = build_prompt(spec, Proposal("page", {}, rows, [], [], 0.5)).user()
    assert "e-16" not in text and "(+0)" in text


def test_pinned_change_is_marked_keep_and_siblings_in_flight_are_named(spec):
    rows = [row(2, "pinned", description="Lead with the customer quote"),
            row(3, "vetoed", reason="built on vetoed #1", description="follow-up"),
            row(4, "running", description="Shorter subtitle", score=None, delta=None)]
    turn = build_prompt(spec, Proposal("page", {}, rows, [], [], None)).user()
    assert "KEEP (pinned by the person): never undo these:\n- #2: Lead with the customer quote" \
        in turn
    assert "BANNED" not in turn  # reverted along with a vetoed parent is not itself banned
    assert "Being evaluated right now (do not propose the same):\n- #4: Shorter subtitle" in turn


def test_failing_items_carry_the_judges_evidence(spec):
    failing = [{"item": "cta", "input": "a bakery", "sample": 0, "passed": 0,
                "evidence": "no call to action anywhere"},
               {"item": "cta", "input": "a gym", "sample": 1, "passed": None,
                "evidence": "no clean yes/no (answered 'maybe'): Contact us."}]
    turn = build_prompt(spec, Proposal("page", {}, [], failing, [], 0.4)).whole()
    assert "Best score so far: 0.4 (higher is better)." in turn
    assert "- cta: failed on 2 output(s), 1 without a clear answer" in turn
    assert "evidence (input 'a bakery'): no call to action anywhere" in turn


def test_the_stable_part_does_not_change_between_rounds(spec):
    one = build_prompt(spec, Proposal("page", {"page.md": "v1"}, [row(2)], [], [], 0.3))
    two = build_prompt(spec, Proposal("page", {"page.md": "v2"}, [row(2), row(3)], [], ["hi"], 0.5))
    assert one.stable == two.stable
    assert one.artifact != two.artifact and one.turn != two.turn


def test_metric_and_test_suite_scoring_are_described():
    metric = parse_spec("""
name: m
target: {files: [a.py]}
mutator: {kind: llm}
evaluate: {kind: metric, command: python bench.py, metric: ms, guard: pytest -q}
""")
    text = describe_evaluation(metric)
    assert "the metric `ms`" in text and "lower is better" in text and "`pytest -q`" in text
    tests = parse_spec("""
name: t
target: {files: [a.py]}
mutator: {kind: llm}
evaluate: {kind: tests, command: pytest -q --junitxml=report.xml}
""")
    assert "share of tests that pass" in describe_evaluation(tests)
