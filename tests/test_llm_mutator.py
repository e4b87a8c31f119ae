"""The `llm` mutator, end to end: the real SDK talks to a local fake Messages API, the real
loop scores with real commands, and everything lands in a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_anthropic import (
    CTA,
    HEADLINE,
    FakeAnthropic,
    Reply,
    candidates,
    change,
    page_spec,
    page_workspace,
    raw_reply,
    run_spec,
    text_reply,
    tool_reply,
    user_text,
)


async def test_tool_use_edit_is_applied_kept_and_recorded(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE], rationale="item `number` fails",
                      tokens_in=1000, tokens_out=200, cache_write=500, cache_read=0),
               change("Add the free-trial call to action", [CTA],
                      tokens_in=40, tokens_out=180, cache_write=0, cache_read=1500))
    store, run_id = await run_spec(tmp_path, page_spec(ws))

    first, second = candidates(store, run_id)
    assert (first["verdict"], second["verdict"]) == ("kept", "kept")
    assert first["description"] == "Put a number in the headline"
    assert first["rationale"] == "item `number` fails"
    assert "-# Grow faster\n+# Grow 3x faster" in first["diff"]
    assert (ws / "page.md").read_text() == \
        "# Grow 3x faster\n\nOur tool helps teams ship.\n\nStart your free trial today.\n"
    assert store.get_run(run_id)["best_score"] == 1.0
    # Usage and cost per experiment, from the spec's price table.
    assert (first["tokens_in"], first["tokens_out"], first["tokens_cache_write"],
            first["tokens_cache_read"]) == (1000, 200, 500, 0)
    assert first["cost_usd"] == pytest.approx((1000 * 3 + 200 * 15 + 500 * 3.75) / 1e6)
    assert second["tokens_cache_read"] == 1500
    assert second["cost_usd"] == pytest.approx((40 * 3 + 180 * 15 + 1500 * 0.3) / 1e6)
    run_row = store.get_run(run_id)
    assert run_row["cost_usd"] == pytest.approx(first["cost_usd"] + second["cost_usd"])
    prices = json.loads(run_row["prices_json"])
    assert prices["mutator"] == {"model": "claude-sonnet-test", "input": 3, "output": 15,
                                 "cache_write": 3.75, "cache_read": 0.3,
                                 "cache_write_1h": 6.0}


async def test_stable_prefix_carries_cache_control(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]),
               change("Add the free-trial call to action", [CTA]))
    await run_spec(tmp_path, page_spec(ws))

    first, second = api.bodies
    instructions, artifact = first["system"]
    assert instructions["cache_control"] == {"type": "ephemeral"}
    assert artifact["cache_control"] == {"type": "ephemeral"}
    assert "ONE small, concrete change" in instructions["text"]
    assert "Make it more engaging" in instructions["text"]  # a bad example, marked bad
    assert "number: Does the headline include a number?" in instructions["text"]
    assert '<file path="page.md">\n# Grow faster\n' in artifact["text"]
    assert "Brand notes" not in artifact["text"]  # only targets are shown
    # The stable prefix is byte-identical from round to round: the cache can serve it.
    assert second["system"][0] == instructions
    # The history is a breakpoint too (it is the next round's prefix); the turn is not.
    *history, turn_block = second["messages"][0]["content"]
    assert history[-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in turn_block
    # The reply is forced through the tool.
    assert first["tool_choice"] == {"type": "tool", "name": "propose_change"}
    assert first["tools"][0]["name"] == "propose_change"
    assert first["model"] == "claude-sonnet-test"
    assert "temperature" not in first  # API 2026-10-21 takes no sampling parameters
    # Round two sees round one in its changelog, and the failing items' evidence.
    turn = user_text(second)
    assert "Put a number in the headline" in turn and "kept" in turn
    best = second["system"][1]["text"]  # cached with the best version's files until a keep
    assert "cta: failed on 1 output(s)" in best
    assert "does not contain 'Start your free trial'" in best


async def test_garbage_reply_is_invalid_and_its_tokens_are_counted(api: FakeAnthropic,
                                                                    tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(text_reply("I think the page is great as it is!", tokens_in=900, tokens_out=30),
               change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws))

    bad, good = candidates(store, run_id)
    assert bad["verdict"] == "invalid"
    assert "without a usable propose_change call: it answered in text" in bad["reason"]
    assert "the page is great" in bad["reason"]
    assert (bad["tokens_in"], bad["tokens_out"]) == (900, 30)
    assert bad["cost_usd"] == pytest.approx((900 * 3 + 30 * 15) / 1e6)
    assert good["verdict"] == "kept"  # the loop went on
    assert store.get_run(run_id)["cost_usd"] >= bad["cost_usd"]


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(200, {"type": "message"}), "the reply has no content"),
    (Reply(200, ["not", "a", "message"]), "the API's reply is not a message: a JSON list"),
    (Reply(200, {"content": "hi"}), "the reply has no content"),
    (Reply(200, {"content": [{"type": "tool_use", "name": "propose_change"}]}),
     "its propose_change input is missing, not an object"),
    (tool_reply("propose_change", ["edits"]), "its propose_change input is a list"),
    (raw_reply(b"<html><head><title>502 Bad Gateway</title></head></html>",
               content_type="text/html"),
     "the API's reply is not a message: an HTML page titled '502 Bad Gateway'"),
    (raw_reply(b'{"content": [{"type": "text", "text": "caf\xe9"}]}'),
     "unreadable reply from the API: UnicodeDecodeError"),
    (raw_reply(b'{"content": [{"type": '), "unreadable reply from the API: JSONDecodeError"),
    (tool_reply("propose_change", {"description": "d", "rationale": "r", "edits": "add 3x"}),
     "edits must be a list of {file, search, replace} objects; the reply gave a string"),
])
async def test_a_malformed_reply_is_invalid_with_what_was_wrong(api: FakeAnthropic,
                                                               tmp_path: Path,
                                                               reply: Reply, reason: str):
    """Whatever the server sends — bare JSON, an HTML page, invalid UTF-8, cut JSON, a tool
    input of the wrong shape — is that experiment's verdict, said plainly; the loop goes on."""
    ws = page_workspace(tmp_path)
    api.script(reply, change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws))
    bad, good = candidates(store, run_id)
    assert bad["verdict"] == "invalid"
    assert reason in bad["reason"]
    assert "'nothing'" not in bad["reason"]
    assert good["verdict"] == "kept"
    assert store.get_run(run_id)["status"] == "done"
    assert not store.in_flight(run_id)


@pytest.mark.parametrize(("edit", "reason"), [
    ({"file": "notes.md", "search": "Brand", "replace": "Bland"}, "notes.md is protected"),
    ({"file": "other.md", "search": "x", "replace": "y"}, "other.md is not a target file"),
    ({"file": "../page.md", "search": "x", "replace": "y"}, "outside the workspace"),
    ({"file": "page.md", "search": "# Grow slower", "replace": "y"}, "search text not found"),
    ({"file": "page.md", "search": "\n\n", "replace": "\n"}, "occurs 2 times"),
])
async def test_bad_edits_are_invalid_with_the_reason(api: FakeAnthropic, tmp_path: Path,
                                                     edit: dict, reason: str):
    ws = page_workspace(tmp_path)
    api.script(change("A sneaky edit", [edit], tokens_in=123),
               change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws))

    bad, good = candidates(store, run_id)
    assert bad["verdict"] == "invalid"
    assert reason in bad["reason"]
    assert bad["description"] == "A sneaky edit"
    assert bad["tokens_in"] == 123
    assert (ws / "notes.md").read_text() == "Brand notes: never change this file.\n"
    assert good["verdict"] == "kept"


async def test_reply_cut_off_at_max_tokens_is_invalid(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    cut = change("Put a number", [HEADLINE])
    cut.body["stop_reason"] = "max_tokens"
    api.script(cut, change("Put a number in the headline", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws))
    bad, good = candidates(store, run_id)
    assert bad["verdict"] == "invalid" and "max_tokens" in bad["reason"]
    assert good["verdict"] == "kept"


async def test_edit_changing_nothing_is_invalid(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    same = {"file": "page.md", "search": "Contact us.", "replace": "Contact us."}
    api.script(change("Say the same thing", [same]), change("Number", [HEADLINE]))
    store, run_id = await run_spec(tmp_path, page_spec(ws))
    bad, _ = candidates(store, run_id)
    assert bad["verdict"] == "invalid" and "change nothing" in bad["reason"]


async def test_max_cost_counts_the_cost_in_flight(api: FakeAnthropic, tmp_path: Path):
    # Each proposal costs $0.01 (1,000 output tokens at $10/M). With three candidates a wave
    # and a $0.015 budget, the second proposal brings spent + in flight to $0.02: no third.
    ws = page_workspace(tmp_path)
    api.script(*[change(f"Idea {n}", [HEADLINE], tokens_in=0, tokens_out=1000) for n in range(3)])
    path = page_spec(ws, parallel=3, stop="max_cost_usd: 0.015", prices="{input: 0, output: 10}")
    store, run_id = await run_spec(tmp_path, path)

    assert len(candidates(store, run_id)) == 2
    run_row = store.get_run(run_id)
    assert run_row["stop_reason"] == "max cost ($0.015) reached"
    assert run_row["cost_usd"] == pytest.approx(0.02)
