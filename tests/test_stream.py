"""Proposals ahead of the slots (engine/stream.py), with the real llm mutator against the
local fake Messages API: the next candidate is asked for while the current one is scored; a
keep abandons a proposal whose parent it replaced (recorded, with its cost) and proposes
again; in beam search the old parent stays alive and the proposal is used as a sibling."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic, change, drive, page_spec, page_workspace

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store

HEADLINE = {"file": "page.md", "search": "# Grow faster", "replace": "# Grow 3x faster"}
CTA = {"file": "page.md", "search": "Contact us.", "replace": "Start your free trial today."}
#: Another headline: the same line HEADLINE changes (it cannot be carried over to it).
HEADLINE2 = {"file": "page.md", "search": "# Grow faster", "replace": "# Grow 2x faster"}
#: Scoring takes a moment, so the next proposal is asked for while it runs.
SLOW = """
evaluate:
  kind: checklist
  produce: {kind: command, command: "sleep 0.3; cat page.md"}
  items:
    - {name: number, regex: "^#.*[0-9]"}
    - {name: cta, contains: Start your free trial}
"""


async def run(tmp_path: Path, spec: Path) -> tuple[Store, int]:
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    await drive(host, 30)
    return store, loop.run_id


def candidates(store: Store, run_id: int) -> list[dict]:
    return [e for e in store.experiments(run_id) if e["kind"] == "candidate"]


async def test_a_keep_abandons_the_proposal_made_ahead_and_records_its_cost(
        api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE], tokens_in=100),
               change("Another number in the headline", [HEADLINE2], tokens_in=200,
                      tokens_out=20),
               change("Add the call to action", [CTA], tokens_in=300))
    store, run_id = await run(tmp_path, page_spec(ws, evaluate=SLOW, ahead=1))

    first, abandoned, second = candidates(store, run_id)
    assert (first["verdict"], abandoned["verdict"], second["verdict"]) == \
        ("kept", "abandoned", "kept")
    # The second request was made while the first candidate was scored: from the baseline.
    assert "# Grow faster\n" in api.bodies[1]["system"][1]["text"]
    assert "# Grow 3x faster\n" in api.bodies[2]["system"][1]["text"]
    assert abandoned["parent"] == first["parent"]
    assert "does not carry over" in abandoned["reason"]
    assert (abandoned["tokens_in"], abandoned["tokens_out"]) == (200, 20)
    assert abandoned["cost_usd"] == pytest.approx((200 * 3 + 20 * 15) / 1e6)
    run_row = store.get_run(run_id)
    assert run_row["cost_usd"] == pytest.approx(
        sum(e["cost_usd"] for e in (first, abandoned, second)))
    assert (ws / "page.md").read_text().startswith("# Grow 3x faster")
    assert len(api.requests) == 3  # nothing asked for that max_rounds would not use


async def test_a_proposal_made_ahead_that_edits_other_lines_is_carried_over_a_keep(
        api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]),
               change("Add the call to action", [CTA]))
    store, run_id = await run(tmp_path, page_spec(ws, evaluate=SLOW, ahead=1))

    first, second = candidates(store, run_id)
    assert (first["verdict"], second["verdict"]) == ("kept", "kept")
    assert second["parent"] == first["id"]  # made on the baseline, evaluated on the new best
    assert f"carried over to #{first['id']}" in second["rationale"]
    assert "# Grow faster\n" in api.bodies[1]["system"][1]["text"]  # (asked for ahead)
    assert (ws / "page.md").read_text() == \
        "# Grow 3x faster\n\nOur tool helps teams ship.\n\nStart your free trial today.\n"
    assert len(api.requests) == 2 and store.get_run(run_id)["best_score"] == 1.0


async def test_in_beam_search_a_proposal_made_ahead_survives_a_keep_as_a_sibling(
        api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]),
               change("Add the call to action", [CTA]))
    spec = page_spec(ws, evaluate=SLOW, ahead=1, extra="search: {strategy: beam, width: 3}")
    store, run_id = await run(tmp_path, spec)

    first, second = candidates(store, run_id)
    baseline = store.experiments(run_id)[0]["id"]
    assert first["parent"] == second["parent"] == baseline  # siblings
    assert (first["verdict"], second["verdict"]) == ("kept", "kept")
    assert "joins the frontier" in second["reason"] or "new best" in second["reason"]
    assert not [e for e in store.experiments(run_id) if e["verdict"] == "abandoned"]
    assert len(api.requests) == 2


async def test_ahead_zero_proposes_only_when_a_slot_is_free(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]),
               change("Add the call to action", [CTA]))
    store, run_id = await run(tmp_path, page_spec(ws, evaluate=SLOW, ahead=0))
    assert [e["verdict"] for e in candidates(store, run_id)] == ["kept", "kept"]
    assert "# Grow 3x faster\n" in api.bodies[1]["system"][1]["text"]


def test_a_change_carries_over_only_where_its_lines_are_unchanged():
    from engine.rebase import rebase

    old = {"a.py": "x = 1\ny = 2\nz = 3\n", "b.py": "b\n"}
    new = {"a.py": "x = 10\ny = 2\nz = 3\n", "b.py": "b\n"}
    assert rebase(old, new, {"a.py": "x = 1\ny = 2\nz = 30\n"}) == \
        {"a.py": "x = 10\ny = 2\nz = 30\n"}
    assert rebase(old, new, {"a.py": "x = 5\ny = 2\nz = 3\n"}) is None  # the same line
    assert rebase(old, new, {"b.py": "c\n"}) == {"b.py": "c\n"}  # a file the keep left alone
    # A hunk whose context occurs twice in the new version is not guessed at.
    assert rebase({"f": "a\nb\n"}, {"f": "a\nb\na\nb\n"}, {"f": "a\nB\n"}) is None


async def test_a_stop_records_a_proposal_made_ahead_with_its_cost(api: FakeAnthropic,
                                                                 tmp_path: Path):
    import asyncio

    ws = page_workspace(tmp_path)
    slow = SLOW.replace("sleep 0.3", "sleep 5")
    api.script(change("Put a number in the headline", [HEADLINE]),
               change("Add the call to action", [CTA], tokens_in=70))
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(page_spec(ws, evaluate=slow, ahead=1, stop="max_rounds: 9")))
    task = asyncio.create_task(host.run_until_done())
    for _ in range(400):  # the second proposal, made while the first candidate is scored
        if loop.stream.waiting and loop.stream.waiting[0].task.done():
            break
        await asyncio.sleep(0.025)
    host.stop_all()
    await asyncio.wait_for(task, 20)
    rows = candidates(store, loop.run_id)
    assert [r["verdict"] for r in rows] == ["interrupted", "abandoned"]
    assert "the run stopped" in rows[1]["reason"] and rows[1]["tokens_in"] == 70
