"""Money the user can see and budget: the agent mutator's reported cost, `check` on caches
that can never form and budgets that cannot be enforced, and the stand-in's cache rules (the
API's minimum cacheable lengths, TTLs, the append-only history read from the cache)."""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO
from fake_anthropic import (
    FakeAnthropic,
    Router,
    answers,
    change,
    drive,
    judged_items,
    page_spec,
    page_workspace,
    text_reply,
)

from engine.cache import cache_minimum, cache_warnings
from engine.cli import cmd_check
from engine.host import Host
from engine.mutators.agent_cost import agent_usage
from engine.spec import load_spec
from engine.store import Store

# ---------------------------------------------------------------- 3: the agent's cost


CLAUDE_JSON = ('{"type":"result","subtype":"success","is_error":false,"result":"Done.\\n'
               'DESCRIPTION: Put 3x in the headline\\nRATIONALE: the number item fails",'
               '"total_cost_usd":0.0421,"usage":{"input_tokens":1200,"cache_creation_input_'
               'tokens":3000,"cache_read_input_tokens":9000,"output_tokens":450}}')


@pytest.mark.parametrize(("output", "tokens", "cost"), [
    (CLAUDE_JSON, (1200, 450, 3000, 9000), 0.0421),
    ("Applied edit to page.md\nTokens: 4.2k sent, 312 received. Cost: $0.02 message, "
     "$0.05 session.\n", (4200, 312, 0, 0), 0.02),
    ("codex\nDone.\ntokens used: 12,345\n", (12345, 0, 0, 0), 0.0),
    ("no numbers at all\n", None, None),
])
def test_what_an_agent_says_it_cost_is_read(output: str, tokens, cost):
    usage, _ = agent_usage(output)
    if tokens is None:
        assert usage is None
        return
    assert (usage.tokens_in, usage.tokens_out, usage.tokens_cache_write,
            usage.tokens_cache_read) == tokens
    assert usage.cost_usd == pytest.approx(cost)


async def test_the_agent_mutators_cost_is_recorded_and_counts_toward_the_budget(
        tmp_path: Path):
    ws = page_workspace(tmp_path)
    script = tmp_path / "claude.py"
    script.write_text(textwrap.dedent(f"""
        import pathlib, sys
        sys.stdin.read()
        page = pathlib.Path("page.md")
        page.write_text(page.read_text().replace("# Grow faster", "# Grow 3x faster", 1)
                        .replace("3x 3x", "3x"))
        print({CLAUDE_JSON!r})
    """))
    spec = ws.parent / "agent.yaml"
    spec.write_text(f"""
name: agent-cost
target: {{workspace: {ws.name}, files: [page.md]}}
mutator:
  kind: agent
  command: "{sys.executable} {script} -p --output-format json"
evaluate:
  kind: checklist
  produce: {{kind: command, command: cat page.md}}
  items:
    - {{name: number, regex: "^#.*[0-9]"}}
    - {{name: cta, contains: Start your free trial}}
    - {{name: short, words: {{max: 60}}}}
stop: {{max_rounds: 10, max_cost_usd: 0.1, max_failures: null, plateau: null}}
""")
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    await drive(host, 60)
    cands = [e for e in store.experiments(loop.run_id) if e["kind"] == "candidate"]
    first = cands[0]
    assert first["verdict"] == "kept" and first["description"] == "Put 3x in the headline"
    assert first["cost_usd"] == pytest.approx(0.0421)
    assert (first["tokens_in"], first["tokens_out"]) == (1200, 450)
    run = store.get_run(loop.run_id)
    assert run["stop_reason"] == "max cost ($0.1) reached"  # the budget fires with an agent
    assert run["cost_usd"] == pytest.approx(sum(e["cost_usd"] for e in cands))


def test_check_says_when_a_budget_cannot_be_enforced_for_an_agent(tmp_path: Path):
    ws = page_workspace(tmp_path)
    text = """
name: {name}
target: {{workspace: ws, files: [page.md]}}
mutator: {{kind: agent, command: "{command}"}}
evaluate:
  kind: checklist
  produce: {{kind: command, command: cat page.md}}
  items: [{{name: number, regex: "[0-9]"}}, {{name: a, contains: x}}, {{name: b, contains: y}}]
stop: {{max_cost_usd: 2}}
"""
    for name, command, warned in [("plain", "codex exec --full-auto -", True),
                                  ("json", "claude -p --output-format json", False),
                                  ("aider", "aider --yes-always --message-file x", False)]:
        path = ws.parent / f"{name}.yaml"
        path.write_text(text.format(name=name, command=command))
        said = cache_warnings(load_spec(path))
        assert any("stop.max_cost_usd (2) cannot count the agent mutator" in w
                   for w in said) == warned, (name, said)


# ---------------------------------------------------------------- 11: caches that can form


def test_the_minimum_cacheable_length_is_known_per_model_family():
    assert cache_minimum("claude-sonnet-4-6") == 1024
    assert cache_minimum("claude-sonnet-4-5-20250929") == 1024
    assert cache_minimum("claude-haiku-4-5") == 4096
    assert cache_minimum("claude-opus-4-6") == 4096
    assert cache_minimum("claude-opus-4-5-20251101") == 4096
    assert cache_minimum("claude-opus-4-1") == 1024
    assert cache_minimum("claude-3-5-haiku-20241022") == 2048


def test_check_says_when_a_judge_prefix_can_never_cache(tmp_path: Path, capsys, api_key: str):
    ws = page_workspace(tmp_path)
    (ws / "page.md").write_text("Write a page. " * 600)  # ~2,100 tokens: matters, uncacheable
    evaluate = """
evaluate:
  kind: checklist
  produce: {{kind: llm, system_file: page.md, model: claude-haiku-4-5}}
  inputs: [a, b]
  items:
    - {{name: q1, question: "Is it clear?"}}
    - {{name: q2, question: "Is it short?"}}
    - {{name: q3, question: "Is it kind?"}}
  judge: {{model: {judge}}}
"""
    haiku = page_spec(ws, "haiku", evaluate=evaluate.format(judge="claude-haiku-4-5"))
    sonnet = page_spec(ws, "sonnet", evaluate=evaluate.format(judge="claude-sonnet-4-6"))
    assert cmd_check([str(haiku), str(sonnet)], io.StringIO()) == 0
    err = capsys.readouterr().err
    assert "haiku.yaml: judge: its fixed prefix (instructions and questions, ~1," in err
    assert "under claude-haiku-4-5's minimum cacheable length (4,096), so it is never cached" \
        in err
    assert "sonnet.yaml: judge" not in err  # the judging guide reaches Sonnet's 1,024
    assert "produce: page.md (~2,100 tokens) is under claude-haiku-4-5's minimum cacheable " \
           "length (4,096): it is sent uncached on each of the 2 calls" in err


async def test_the_stand_in_caches_only_prefixes_at_the_minimum_and_the_history_is_read(
        api: FakeAnthropic, tmp_path: Path):
    """With the API's cache rules: the judge's guide caches on Sonnet, the producer's short
    page never does on Haiku, and the mutator reads last round's history from the cache."""
    ws = page_workspace(tmp_path)
    evaluate = """
evaluate:
  kind: checklist
  produce: {kind: llm, system_file: page.md, model: claude-haiku-4-5}
  inputs: [a bakery]
  samples: 2
  items:
    - {name: number, regex: "[0-9]"}
    - {name: friendly, question: "Is the tone friendly?"}
  judge: {model: claude-sonnet-4-6}
"""
    edits = [change(f"Say it {n} times", [{"file": "page.md", "search": "Contact us.",
                                           "replace": "Contact us." + " Now." * n}])
             for n in range(1, 7)]
    router = Router(edits, produce=lambda body: text_reply("Hello friend"),
                    judge=lambda body: answers([(i, "no", "-") for i in judged_items(body)]))
    api.responder, api.cache = router, True
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    spec = page_spec(ws, evaluate=evaluate, stop="max_rounds: 6")
    spec.write_text(spec.read_text().replace("claude-sonnet-test", "claude-sonnet-4-6"))
    host.add(load_spec(spec))
    await drive(host, 60)
    bills = list(api.billed)
    produced = [b for b in bills if b["tool"] is None]
    judged = [b for b in bills if b["tool"] == "record_answers"]
    proposed = [b for b in bills if b["tool"] == "propose_change"]
    assert all(b["cache_read_input_tokens"] == b["cache_creation_input_tokens"] == 0
               for b in produced)  # far below Haiku's 4,096
    assert judged[0]["cache_creation_input_tokens"] > 1024
    assert all(b["cache_read_input_tokens"] > 1024 for b in judged[1:])
    # Under Sonnet's 1,024 tokens nothing caches; from then on each round reads the whole
    # prompt the last round wrote (instructions, page, history) and writes only what is new.
    assert proposed[0]["cache_creation_input_tokens"] == 0
    wrote = [i for i, b in enumerate(proposed) if b["cache_creation_input_tokens"]]
    assert wrote and wrote[0] < len(proposed) - 1
    for before, after in zip(proposed[wrote[0]:], proposed[wrote[0] + 1:], strict=False):
        assert after["cache_read_input_tokens"] == (before["cache_read_input_tokens"]
                                                    + before["cache_creation_input_tokens"])
        assert after["input_tokens"] < 200  # only this round's turn is uncached


async def test_calls_far_apart_switch_to_the_one_hour_cache(api: FakeAnthropic):
    from engine.llm import LLMClient
    from engine.spec import LLMSettings

    api.responder = lambda body: text_reply("ok")
    client = LLMClient(LLMSettings(), role="judge")
    assert client.cache_control() == {"type": "ephemeral"}
    client.last_call = 0.0  # the last call started long ago: rounds take longer than 4 min
    await client.create(system=[{"type": "text", "text": "x"}],
                        messages=[{"role": "user", "content": "hi"}])
    assert client.cache_control() == {"type": "ephemeral", "ttl": "1h"}
    assert LLMClient(LLMSettings(cache_ttl="5m"), role="j").cache_control() == {
        "type": "ephemeral"}
    assert LLMClient(LLMSettings(cache_ttl="1h"), role="j").cache_control()["ttl"] == "1h"


def test_one_hour_cache_writes_are_priced_as_such():
    from engine.llm import prices_for, usage_of
    from engine.spec import LLMSettings

    class Split:
        ephemeral_5m_input_tokens, ephemeral_1h_input_tokens = 1000, 2000

    class Raw:
        input_tokens, output_tokens = 10, 0
        cache_creation_input_tokens, cache_read_input_tokens = 3000, 0
        cache_creation = Split()

    usage = usage_of(Raw(), prices_for(LLMSettings(model="claude-sonnet-4-6")))
    assert usage.cost_usd == pytest.approx((10 * 3 + 1000 * 3.75 + 2000 * 6) / 1e6)


def test_ready_specs_are_cache_clean(monkeypatch: pytest.MonkeyPatch):
    for name in ("landing-page", "cold-email", "claude-skill"):
        assert cache_warnings(load_spec(REPO / "checklists" / f"{name}.yaml")) == []
