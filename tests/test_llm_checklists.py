"""The ready-to-run specs in checklists/: they validate, and the landing-page skill runs a
whole round (mutate → produce pages → judge → keep) against the fake Messages API."""

from __future__ import annotations

import io
import json
import re
import shutil
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
    judged_output,
    text_reply,
    user_text,
)

from engine.cli import cmd_check
from engine.host import Host
from engine.spec import load_spec
from engine.store import Store

READY = ["landing-page", "claude-skill", "cold-email", "code-speed"]


def test_every_ready_spec_passes_check_without_warnings(capsys: pytest.CaptureFixture[str],
                                                         api_key: str):
    paths = [str(REPO / "checklists" / f"{name}.yaml") for name in READY]
    out = io.StringIO()
    assert cmd_check(paths, out) == 0
    err = capsys.readouterr().err
    assert out.getvalue().count(": ok — run") == len(READY)
    assert err == ""


@pytest.mark.parametrize("name", ["landing-page", "claude-skill", "cold-email"])
def test_ready_llm_specs_use_the_noise_aware_rule(name: str):
    """Judge noise must not keep filler rules: the ready specs compare answer by answer."""
    spec = load_spec(REPO / "checklists" / f"{name}.yaml")
    assert spec.decide.rule == "paired" and spec.decide.confirm
    assert spec.decide.noise_repeats and spec.decide.noise_repeats >= 3


def test_landing_page_items_ask_the_questions_from_the_issue():
    spec = load_spec(REPO / "checklists" / "landing-page.yaml")
    questions = [i.question for i in spec.evaluate.items if i.question]
    assert "Does the headline include a specific number?" in questions
    assert "Is there a clear call-to-action in the first paragraph?" in questions


def write_page(body: dict) -> object:
    """The artifact at work: a page whose headline has a number only if the skill asks."""
    skill = body["system"][0]["text"]
    brief = user_text(body)
    name = brief.split(":")[0]
    headline = f"# {name}: save 4 hours a month" if "number" in skill else f"# Meet {name}"
    return text_reply(f"{headline}\n\nStart your free trial today.\n\nIt just works.",
                      tokens_in=120, tokens_out=40, cache_read=300)


def judge_page(body: dict) -> object:
    page = judged_output(body)
    first_line = page.splitlines()[0]
    verdicts = {"headline-number": ("yes", first_line) if re.search(r"\d", first_line)
                else ("no", f"no number in {first_line!r}"),
                "cta-first": ("yes", "Start your free trial today."),
                "benefit": ("yes", "save 4 hours a month") if "save" in page
                else ("no", "only features are named")}
    return answers([(n, *verdicts[n]) for n in judged_items(body)], tokens_in=200, tokens_out=60)


async def test_landing_page_spec_runs_a_round_against_the_fake_api(
        api: FakeAnthropic, tmp_path: Path):
    shutil.copytree(REPO / "checklists" / "landing-page", tmp_path / "landing-page")
    spec_path = tmp_path / "landing-page.yaml"
    spec_path.write_text((REPO / "checklists" / "landing-page.yaml").read_text()
                         .replace("max_rounds: 30", "max_rounds: 1"))
    edit = {"file": "skill.md", "search": "Write a headline,",
            "replace": "Write a headline that includes a specific number from the brief,"}
    router = Router([change("Ask for a number from the brief in the headline", [edit],
                            tokens_in=900, tokens_out=150)],
                    produce=write_page, judge=judge_page)
    api.responder = router
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(spec_path))
    await drive(host, 60)
    bodies = api.bodies

    baseline, cand = store.experiments(loop.run_id)
    assert baseline["score"] == pytest.approx(3 / 5)  # no number, no concrete benefit
    assert cand["verdict"] == "kept" and cand["score"] == 1.0
    assert "includes a specific number" in (tmp_path / "landing-page" / "skill.md").read_text()
    # 3 briefs × 2 samples produced and judged per evaluation: the baseline 3 times (its
    # noise floor), the candidate twice (the paired rule's keep, confirmed); one mutation.
    assert sum(1 for b in bodies if "tools" not in b) == 6 * 5
    assert sum(1 for b in bodies if b.get("tool_choice", {}).get("name") == "record_answers") \
        == 6 * 5
    assert {b["model"] for b in bodies if "tools" not in b} == {"claude-haiku-4-5"}
    # The candidate's cost holds its mutation, its 12 pages and its 12 judgements.
    assert cand["tokens_in"] == 900 + 12 * 120 + 12 * 200
    assert cand["tokens_cache_read"] == 12 * 300
    expected = (900 * 3 + 150 * 15) / 1e6 + 12 * (120 * 1 + 40 * 5 + 300 * 0.1) / 1e6 \
        + 12 * (200 * 3 + 60 * 15) / 1e6
    assert cand["cost_usd"] == pytest.approx(expected)
    run = store.get_run(loop.run_id)
    assert run["cost_usd"] == pytest.approx(baseline["cost_usd"] + cand["cost_usd"])
    prices = json.loads(store.get_run(loop.run_id)["prices_json"])
    assert set(prices) == {"mutator", "judge", "produce"}
    assert prices["produce"]["model"] == "claude-haiku-4-5"
    # Evidence per item and output, and the outputs themselves, for the detail view.
    results = store.item_results(cand["id"])
    assert len(results) == 6 * 5
    number = [r for r in results if r["item"] == "headline-number"]
    assert all(r["passed"] == 1 and "save 4 hours" in r["evidence"] for r in number)
    outputs = [e["line"] for e in store.events(experiment_id=cand["id"])
               if e["line"].startswith("output for input")]
    assert len(outputs) == 12 and "Start your free trial today." in outputs[0]
