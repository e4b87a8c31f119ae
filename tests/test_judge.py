"""LLM-judged checklists: `question` items answered yes/no with quoted evidence by a judge
behind the real SDK, mixed with deterministic checks; outputs produced by running the
artifact itself (`produce: llm`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fake_anthropic import (
    FakeAnthropic,
    Router,
    answers,
    change,
    drive,
    error_reply,
    judged_items,
    judged_output,
    page_spec,
    page_workspace,
    text_reply,
    tool_reply,
    user_text,
)

from engine import spec as specs
from engine.cli import cmd_check
from engine.evaluators.checklist import ChecklistEvaluator
from engine.host import Host
from engine.spec import load_spec, parse_spec
from engine.store import Store
from engine.workers.local import LocalSession

MIXED = """
evaluate:
  kind: checklist
  produce: {kind: command, command: cat page.md}
  inputs: ["visitor from search"]
  items:
    - name: number
      question: Does the headline include a specific number?
      regex: "^#.*[0-9]"
    - name: cta
      question: Is there a clear call-to-action in the first paragraph?
    - name: benefit
      question: Does the page name a concrete benefit?
    - {name: short, words: {max: 60}}
"""


def evaluator(tmp_path: Path, evaluate: str) -> tuple[ChecklistEvaluator, LocalSession]:
    ws = page_workspace(tmp_path)
    spec = load_spec(page_spec(ws, evaluate=evaluate))
    assert isinstance(spec.evaluate, specs.ChecklistEval)
    return ChecklistEvaluator(spec.evaluate), LocalSession(ws)


async def test_judge_answers_questions_with_evidence_beside_deterministic_checks(
        api: FakeAnthropic, tmp_path: Path):
    api.script(answers([("cta", "yes", "Contact us."),
                        ("benefit", "no", "no benefit is named")], tokens_in=300, tokens_out=40))
    ev, session = evaluator(tmp_path, MIXED)
    lines: list[str] = []
    result = await ev.evaluate(session, lines.append)

    got = {r.item: (r.passed, r.evidence) for r in result.items}
    assert got["number"] == (False, "no match for /^#.*[0-9]/")  # deterministic, not asked
    assert got["cta"] == (True, "Contact us.")
    assert got["benefit"] == (False, "no benefit is named")
    assert got["short"][0] is True
    assert [r.item for r in result.items] == ["number", "cta", "benefit", "short"]
    assert result.score == 0.5
    assert (result.usage.tokens_in, result.usage.tokens_out) == (300, 40)

    [request] = api.bodies
    assert request["tool_choice"] == {"type": "tool", "name": "record_answers"}
    assert request["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert judged_items(request) == ["cta", "benefit"]  # only the questions go to the judge
    assert "Is there a clear call-to-action in the first paragraph?" in request["system"][0]["text"]
    assert judged_output(request).startswith("# Grow faster")
    assert "<input>\nvisitor from search\n</input>" in user_text(request)
    assert "temperature" not in request  # the SDK's API version takes no sampling parameters


async def test_judge_asks_for_temperature_zero_where_the_api_version_allows(
        api: FakeAnthropic, tmp_path: Path):
    api.script(answers([("cta", "yes", "Contact us."), ("benefit", "yes", "ship")]))
    ev, session = evaluator(tmp_path, MIXED + '  judge: {model: claude-judge, api_version: "2023-06-01"}\n')
    await ev.evaluate(session, lambda line: None)
    [request] = api.requests
    assert request["body"]["temperature"] == 0
    assert request["body"]["model"] == "claude-judge"
    assert request["headers"]["anthropic-version"] == "2023-06-01"


async def evidence_of(ev: ChecklistEvaluator, session: LocalSession):
    """The evaluation, also when its evidence is too broken to score (the loop pauses then)."""
    from engine.evaluators.evidence import EvidenceBroken

    try:
        return await ev.evaluate(session, lambda line: None)
    except EvidenceBroken as exc:
        return exc.evaluation


async def test_an_unclear_answer_is_recorded_as_such_not_guessed(api: FakeAnthropic,
                                                                 tmp_path: Path):
    api.script(answers([("cta", "Probably yes", "Contact us."), ("cta", "no", "a duplicate")]))
    ev, session = evaluator(tmp_path, MIXED)
    result = await evidence_of(ev, session)

    got = {r.item: r for r in result.items}
    assert got["cta"].passed is None
    assert got["cta"].evidence == "no clean yes/no (answered 'Probably yes'): Contact us."
    assert got["benefit"].passed is None
    assert got["benefit"].evidence == "the judge gave no answer"
    assert result.metrics["unanswered"] == 2
    assert result.status == "crashed"  # a judge that answers half the questions is broken
    assert result.error.startswith("unusable evidence: the judge left 2 of 2 answers")


async def test_a_judge_reply_without_the_tool_leaves_every_question_unanswered(
        api: FakeAnthropic, tmp_path: Path):
    api.script(text_reply("The page looks fine to me."))
    ev, session = evaluator(tmp_path, MIXED)
    result = await evidence_of(ev, session)
    unanswered = [r for r in result.items if r.passed is None]
    assert [r.item for r in unanswered] == ["cta", "benefit"]
    assert "without a usable record_answers call" in unanswered[0].evidence
    assert "looks fine" in unanswered[0].evidence


PRODUCED = """
evaluate:
  kind: checklist
  produce:
    kind: llm
    system_file: page.md
    model: claude-writer
    max_retries: 0
  inputs: ["a bakery", ""]
  samples: 2
  concurrency: 2
  items:
    - {name: number, regex: "[0-9]"}
    - name: friendly
      question: Is the tone friendly?
    - {name: short, words: {max: 40}}
"""


async def test_produce_llm_runs_the_artifact_as_system_prompt_for_each_input_and_sample(
        api: FakeAnthropic, tmp_path: Path):
    def produce(body: dict) -> object:
        user = body["messages"][0]["content"]
        return text_reply(f"Welcome! 3 reasons to love {user}.", tokens_in=50, tokens_out=10,
                          cache_read=400)

    api.responder = Router(produce=produce, judge=lambda body: answers(
        [("friendly", "yes", judged_output(body)[:8])]))
    ev, session = evaluator(tmp_path, PRODUCED)
    lines: list[str] = []
    result = await ev.evaluate(session, lines.append)

    produced = [b for b in api.bodies if "tools" not in b]
    assert len(produced) == 4  # 2 inputs × 2 samples
    for body in produced:
        assert body["system"] == [{"type": "text", "cache_control": {"type": "ephemeral"},
                                   "text": (tmp_path / "ws" / "page.md").read_text()}]
        assert body["model"] == "claude-writer"
    users = sorted(b["messages"][0]["content"] for b in produced)
    assert users == ["(no input: produce your output now)"] * 2 + ["a bakery"] * 2
    assert result.score == 1.0
    assert {(r.input, r.sample) for r in result.items} == {
        ("a bakery", 0), ("a bakery", 1), ("", 0), ("", 1)}
    # The outputs are kept (bounded) as events for the detail view.
    outputs = [line for line in lines if line.startswith("output for input")]
    assert len(outputs) == 4
    assert "Welcome! 3 reasons to love a bakery." in "\n".join(outputs)
    assert result.usage.tokens_cache_read == 4 * 400


async def test_a_judge_that_keeps_failing_crashes_the_candidate_and_pauses_the_run(
        api: FakeAnthropic, tmp_path: Path):
    judged = []

    def judge(body: dict) -> object:
        judged.append(1)
        proposed = any((b.get("tool_choice") or {}).get("name") == "propose_change"
                       for b in api.bodies)
        if proposed:  # the baseline is judged (all its repeats); then the judge goes down
            return error_reply(529, "overloaded_error", "Overloaded")
        return answers([("cta", "no", "Contact us."), ("benefit", "no", "none")])

    api.responder = Router([change("Put a number in the headline", [
        {"file": "page.md", "search": "# Grow faster", "replace": "# Grow 3x faster"}])],
        judge=judge)
    ws = page_workspace(tmp_path)
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(page_spec(ws, evaluate=MIXED + "  judge: {max_retries: 1, "
                                        "retry_backoff_s: 0.01}\n")))
    task = asyncio.ensure_future(drive(host))
    try:
        deadline = time.monotonic() + 20
        while store.get_run(loop.run_id)["status"] != "paused":
            assert time.monotonic() < deadline, (store.get_run(loop.run_id), [
                (e["kind"], e["verdict"], e["reason"]) for e in store.experiments(loop.run_id)])
            await asyncio.sleep(0.05)
        run = store.get_run(loop.run_id)
        cand = store.experiments(loop.run_id)[-1]
    finally:
        host.stop_all()
        await asyncio.gather(task, return_exceptions=True)
    assert cand["verdict"] == "interrupted"  # an outage is not the candidate's verdict
    assert "not scored: checklist judge: the Anthropic API failed 2 times" in cand["error"]
    assert "529 overloaded_error" in run["stop_reason"]
    assert (ws / "page.md").read_text().startswith("# Grow faster")  # nothing advanced


def test_check_warns_when_a_checklist_has_too_few_or_too_many_items(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], api_key: str):
    ws = page_workspace(tmp_path)
    few = page_spec(ws, "few", evaluate="""
evaluate:
  kind: checklist
  produce: {kind: command, command: cat page.md}
  items:
    - name: cta
      question: Is there a clear call-to-action?
    - name: number
      question: Does the headline include a number?
""")
    many_items = "\n".join(f"    - {{name: q{n}, contains: x{n}}}" for n in range(7))
    many = page_spec(ws, "many", evaluate=f"""
evaluate:
  kind: checklist
  produce: {{kind: command, command: cat page.md}}
  items:
{many_items}
""")
    assert cmd_check([str(few), str(many)]) == 0
    err = capsys.readouterr().err
    assert "2 items; 3 to 6 work best" in err
    assert "7 items; 3 to 6 work best" in err


def test_an_item_needs_a_check_or_a_question():
    with pytest.raises(specs.SpecError, match="needs a check"):
        parse_spec("""
name: x
target: {files: [a.md]}
mutator: {kind: llm}
evaluate:
  kind: checklist
  produce: {kind: command, command: cat a.md}
  items: [{name: empty}]
""")


def test_produce_llm_needs_a_system_file(tmp_path: Path, api_key: str):
    ws = page_workspace(tmp_path)
    spec = load_spec(page_spec(ws, evaluate=PRODUCED.replace("    system_file: page.md\n", "")))
    with pytest.raises(specs.UserError, match="system_file: name the target file"):
        ChecklistEvaluator(spec.evaluate)


async def test_judge_batch_judges_the_samples_of_one_input_in_one_call(api: FakeAnthropic,
                                                                      tmp_path: Path):
    """Same questions, one call per input: each answer names its output, and each output's
    answers land on that sample."""
    import re as regex

    def judge(body: dict) -> object:
        outputs = regex.findall(r'<output n="(\d)">\n(.*?)\n</output>', user_text(body),
                                flags=regex.DOTALL)
        assert len(outputs) == 2
        return tool_reply("record_answers", {"answers": [
            {"output": int(n), "item": "friendly", "answer": "yes" if "warm" in text else "no",
             "evidence": text[:10]} for n, text in outputs]})

    produced = iter(["A warm hello 1", "A cold stare 2"] * 4)
    api.responder = Router(produce=lambda body: text_reply(next(produced)), judge=judge)
    ev, session = evaluator(tmp_path, PRODUCED + "  judge_batch: 2\n")
    result = await ev.evaluate(session, lambda line: None)
    judged = [b for b in api.bodies if b.get("tools")]
    assert len(judged) == 2  # 2 inputs × 2 samples in 2 calls, not 4
    schema = judged[0]["tools"][0]["input_schema"]["properties"]["answers"]["items"]
    assert "output" in schema["required"]
    friendly = {(r.input, r.sample): r for r in result.items if r.item == "friendly"}
    assert len(friendly) == 4
    for r in friendly.values():
        assert r.passed == r.evidence.startswith("A warm")
