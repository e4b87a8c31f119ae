"""Playbooks: `export --format playbook` distils a run's changelog through the model, and a
new run can start from playbook files or from earlier runs named in its spec."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from conftest import cli_env, run_cli
from fake_anthropic import (
    FakeAnthropic,
    change,
    drive,
    page_spec,
    page_workspace,
    text_reply,
    tool_reply,
)

from engine.cli import cmd_export
from engine.host import Host
from engine.model import UserError
from engine.spec import load_spec
from engine.store import Store

HEADLINE = {"file": "page.md", "search": "# Grow faster", "replace": "# Grow 3x faster"}
WORDY = {"file": "page.md", "search": "Contact us.",
         "replace": "Contact us. " + "Really, truly, honestly. " * 20}


def run_page(tmp_path: Path, ws: Path, name: str = "page", mutator: str = "",
             rounds: int = 2) -> int:
    """Run an llm spec to the end (synchronously, so exports can use their own event loop)."""
    async def go() -> int:
        store = Store(tmp_path / "ar.db")
        host = Host(store)
        loop = host.add(load_spec(page_spec(ws, name, mutator=mutator,
                                            stop=f"max_rounds: {rounds}")))
        await drive(host)
        return loop.run_id

    return asyncio.run(go())


PLAYBOOK = tool_reply("write_playbook", {
    "helped": [{"change": "Concrete numbers in the headline", "why": "#2 raised `number`"}],
    "never_helped": [{"change": "Padding the copy", "why": "#3 broke the word limit"}],
    "advice": ["Check the word count before adding text"]}, tokens_in=800, tokens_out=120)


def test_export_playbook_distils_the_changelog_into_markdown(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]),
               change("Pad the closing line", [WORDY]), PLAYBOOK)
    run_page(tmp_path, ws)
    out = io.StringIO()
    assert cmd_export(tmp_path / "ar.db", "page", "playbook", None, out) == 0
    text = out.getvalue()

    assert text.startswith("# Playbook: page\n")
    assert "Baseline 0.3333 → best 0.6667 (maximize) over 3 experiments" in text
    assert "## What helped\n\n- **Concrete numbers in the headline** — #2 raised `number`" in text
    assert "## What never helped\n\n- **Padding the copy** — #3 broke the word limit" in text
    assert "## Advice for the next run\n\n- Check the word count before adding text" in text
    assert "800 input, 120 output" in text
    request = api.bodies[-1]
    assert request["tool_choice"] == {"type": "tool", "name": "write_playbook"}
    assert request["model"] == "claude-sonnet-test"  # the run's own mutator model
    changelog = request["messages"][0]["content"]
    assert "#2 kept score 0.6667 (+0.3333): Put a number in the headline" in changelog
    assert "#3 reverted score 0.3333 (-0.3333): Pad the closing line — worse by 0.333" \
        in changelog
    assert '<file path="page.md">\n# Grow 3x faster' in changelog
    assert "Does the headline include a number?" in request["system"][0]["text"]


def test_a_plain_text_playbook_reply_is_used_as_is(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    api.script(change("Put a number in the headline", [HEADLINE]),
               text_reply("## What helped\n\n- numbers"))
    run_page(tmp_path, ws, rounds=1)
    out = io.StringIO()
    cmd_export(tmp_path / "ar.db", "page", "playbook", None, out)
    assert "## What helped\n\n- numbers" in out.getvalue()


def test_export_playbook_without_a_key_or_experiments_says_so(api: FakeAnthropic,
                                                              tmp_path: Path, monkeypatch):
    ws = page_workspace(tmp_path)
    api.script(text_reply("no idea"))  # the only round is invalid
    run_page(tmp_path, ws, rounds=1)
    result = run_cli("export", "page", "--format", "playbook", "--db", str(tmp_path / "ar.db"),
                     env=cli_env())
    # Without a key: the changelog's own account, and one line saying what the model adds.
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Playbook: page\n")
    assert "## What helped" in result.stdout and "## Banned by the person" in result.stdout
    assert result.stderr == ("note: the model's summary (kinds of change, and why) needs "
                             "ANTHROPIC_API_KEY; this playbook is the changelog's own account\n")
    store = Store(tmp_path / "ar.db")
    empty = store.create_run("empty", spec_path="", spec_json="", workspace="", direction="maximize",
                             target=None)
    store.close()
    with pytest.raises(UserError, match="no experiments beyond the baseline"):
        cmd_export(tmp_path / "ar.db", str(empty), "playbook", None, io.StringIO())
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(UserError, match="no experiments beyond the baseline"):
        cmd_export(tmp_path / "ar.db", str(empty), "playbook", None, io.StringIO())


def test_a_playbook_file_named_in_the_spec_starts_the_new_run(api: FakeAnthropic,
                                                              tmp_path: Path):
    ws = page_workspace(tmp_path)
    (tmp_path / "lessons.md").write_text("# Playbook\n\n- Numbers in headlines always helped.\n")
    api.script(change("Put a number in the headline", [HEADLINE]))
    run_page(tmp_path, ws, rounds=1, mutator="  playbooks: [lessons.md]")
    stable = api.bodies[0]["system"][0]["text"]
    assert '<playbook name="lessons.md">\n# Playbook\n\n- Numbers in headlines always helped.' \
        in stable


def test_an_earlier_run_named_in_the_spec_starts_the_new_run(api: FakeAnthropic, tmp_path: Path):
    api.script(change("Put a number in the headline", [HEADLINE]),
               change("Pad the closing line", [WORDY]))
    run_page(tmp_path, page_workspace(tmp_path / "first"), "first")
    api.script(change("Put a number in the headline", [HEADLINE]))
    run_page(tmp_path, page_workspace(tmp_path / "second"), "second", rounds=1,
             mutator="  playbooks: [first]")
    stable = api.bodies[-1]["system"][0]["text"]
    assert '<playbook name="run first">\nRun first: baseline 0.3333 → best 0.6667' in stable
    assert "Helped (kept):\n- Put a number in the headline (+0.3333)" in stable
    assert "Did not help (reverted):\n- Pad the closing line (-0.3333)" in stable


def test_an_unknown_playbook_is_a_clear_error(api: FakeAnthropic, tmp_path: Path):
    ws = page_workspace(tmp_path)
    spec = load_spec(page_spec(ws, mutator="  playbooks: [no-such-thing]"))
    host = Host(Store(tmp_path / "ar.db"))
    with pytest.raises(UserError, match=r"mutator.playbooks: 'no-such-thing' is neither a file"):
        host.add(spec)
