"""The `agent` mutator with real scripts standing in for a coding agent: they read the
prompt, edit files in their scratch copy (or misbehave), and the engine reads back what
changed. Real subprocesses, real files, real store; no network."""

from __future__ import annotations

import asyncio
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO
from fake_anthropic import drive, page_workspace

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store

PROLOGUE = """\
import os, pathlib, sys
prompt = sys.stdin.read()
assert prompt == pathlib.Path(os.environ["AUTORESEARCH_PROMPT"]).read_text(), "prompt differs"
page = pathlib.Path("page.md")
"""


def agent(tmp_path: Path, body: str, name: str = "agent.py") -> str:
    """Write a stand-in agent script; returns the command that runs it."""
    path = tmp_path / name
    path.write_text(PROLOGUE + textwrap.dedent(body))
    return f"{sys.executable} {path}"


def agent_spec(ws: Path, command: str, *, timeout: float = 20, rounds: int = 1) -> Path:
    path = ws.parent / "agent.yaml"
    path.write_text(f"""
name: page-agent
target:
  workspace: {ws.name}
  files: [page.md]
  protected: [notes.md]
mutator:
  kind: agent
  command: "{command}"
  timeout_s: {timeout}
evaluate:
  kind: checklist
  produce: {{kind: command, command: cat page.md}}
  items:
    - {{name: number, regex: "^#.*[0-9]"}}
    - {{name: cta, contains: Start your free trial}}
    - {{name: short, words: {{max: 60}}}}
stop:
  max_rounds: {rounds}
  max_failures: null
""")
    return path


async def run(tmp_path: Path, spec: Path) -> tuple[Store, list[dict]]:
    store = Store(tmp_path / "ar.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    await drive(host, 60)
    return store, [e for e in store.experiments(loop.run_id) if e["kind"] == "candidate"]


async def test_agent_edits_its_copy_and_the_change_is_kept(tmp_path: Path):
    ws = page_workspace(tmp_path)
    seen = tmp_path / "seen-prompt.md"
    command = agent(tmp_path, f"""
        pathlib.Path({str(seen)!r}).write_text(prompt)
        assert pathlib.Path.cwd() != pathlib.Path({str(ws)!r})  # a scratch copy, not the real one
        page.write_text(page.read_text().replace("# Grow faster", "# Grow 3x faster"))
        pathlib.Path(os.environ["AUTORESEARCH_DESCRIPTION"]).write_text("Put 3x in the headline\\n")
        print("thinking...")
        print("RATIONALE: the number item fails")
    """)
    store, [cand] = await run(tmp_path, agent_spec(ws, command))

    assert cand["verdict"] == "kept"
    assert cand["description"] == "Put 3x in the headline"
    assert cand["rationale"] == "the number item fails"
    assert "+# Grow 3x faster" in cand["diff"]
    assert (ws / "page.md").read_text().startswith("# Grow 3x faster")
    prompt = seen.read_text()
    assert '<file path="page.md">\n# Grow faster' in prompt  # the same prompt as the llm mutator
    assert "ONE small, concrete change" in prompt
    assert "editing the target files in place: page.md" in prompt
    assert "cta: failed on 1 output(s)" in prompt


async def test_description_falls_back_to_a_printed_line_or_a_summary(tmp_path: Path):
    ws = page_workspace(tmp_path)
    command = agent(tmp_path, """
        page.write_text(page.read_text().replace("Contact us.", "Start your free trial."))
        print("DESCRIPTION: Swap the closing line for a trial link")
    """)
    _, [cand] = await run(tmp_path, agent_spec(ws, command))
    assert cand["description"] == "Swap the closing line for a trial link"
    assert cand["rationale"].startswith("agent output (tail):")

    ws2 = page_workspace(tmp_path / "two")
    command = agent(tmp_path, """
        page.write_text(page.read_text() + "Start your free trial.\\n")
    """, name="quiet.py")
    _, [cand] = await run(tmp_path / "two", agent_spec(ws2, command))
    assert cand["description"] == "agent edit of page.md (+1 −0 lines)"


async def test_agent_touching_a_protected_file_is_invalid_and_undone(tmp_path: Path):
    ws = page_workspace(tmp_path)
    command = agent(tmp_path, """
        page.write_text("# 3 ways to grow\\n\\nStart your free trial.\\n")
        pathlib.Path("notes.md").write_text("rewritten by the agent\\n")
    """)
    _, [cand] = await run(tmp_path, agent_spec(ws, command))
    assert cand["verdict"] == "invalid"
    assert cand["reason"] == "the agent changed files outside the targets (undone): notes.md"
    assert (ws / "notes.md").read_text() == "Brand notes: never change this file.\n"
    assert (ws / "page.md").read_text().startswith("# Grow faster")


async def test_new_files_are_refused_but_agent_litter_is_ignored(tmp_path: Path):
    ws = page_workspace(tmp_path)
    command = agent(tmp_path, """
        page.write_text(page.read_text().replace("# Grow faster", "# Grow 3x faster"))
        pathlib.Path("scratch.txt").write_text("my notes")
    """)
    _, [cand] = await run(tmp_path, agent_spec(ws, command))
    assert cand["verdict"] == "invalid" and "scratch.txt" in cand["reason"]

    ws2 = page_workspace(tmp_path / "two")
    command = agent(tmp_path, """
        page.write_text(page.read_text().replace("# Grow faster", "# Grow 3x faster"))
        pathlib.Path("__pycache__").mkdir()
        pathlib.Path("__pycache__/page.cpython-311.pyc").write_bytes(b"x")
        pathlib.Path(".aider.chat.history.md").write_text("chat")
    """, name="tidy.py")
    _, [cand] = await run(tmp_path / "two", agent_spec(ws2, command))
    assert cand["verdict"] == "kept"
    assert not (ws2 / ".aider.chat.history.md").exists()  # litter stayed in the scratch copy


async def test_deleting_a_target_or_changing_nothing_is_invalid(tmp_path: Path):
    ws = page_workspace(tmp_path)
    command = agent(tmp_path, "page.unlink()\n")
    _, [cand] = await run(tmp_path, agent_spec(ws, command))
    assert cand["verdict"] == "invalid" and "deleted the target file page.md" in cand["reason"]
    assert (ws / "page.md").exists()

    ws2 = page_workspace(tmp_path / "two")
    command = agent(tmp_path, "print('nothing to do')\n", name="idle.py")
    _, [cand] = await run(tmp_path / "two", agent_spec(ws2, command))
    assert cand["verdict"] == "invalid" and cand["reason"] == "the agent changed nothing"


async def test_a_failing_agent_is_invalid_with_its_last_words(tmp_path: Path):
    ws = page_workspace(tmp_path)
    command = agent(tmp_path, """
        page.write_text("half-done")
        print("error: rate limited, giving up")
        sys.exit(3)
    """)
    _, [cand] = await run(tmp_path, agent_spec(ws, command))
    assert cand["verdict"] == "invalid"
    assert cand["reason"] == "the agent exited with status 3: error: rate limited, giving up"
    assert (ws / "page.md").read_text().startswith("# Grow faster")


async def test_a_timeout_kills_the_agent_and_everything_it_started(tmp_path: Path):
    ws = page_workspace(tmp_path)
    late = tmp_path / "late.txt"
    command = agent(tmp_path, f"""
        import subprocess
        subprocess.Popen([sys.executable, "-c",
                          "import time, pathlib; time.sleep(1.5); "
                          "pathlib.Path({str(late)!r}).write_text('still alive')"])
        import time; time.sleep(30)
    """)
    started = time.monotonic()
    _, [cand] = await run(tmp_path, agent_spec(ws, command, timeout=0.5))
    assert time.monotonic() - started < 15
    assert cand["verdict"] == "invalid"
    assert cand["reason"] == "the agent did not finish within 0.5s and was killed"
    await asyncio.sleep(2)
    assert not late.exists()  # its child died with it


async def test_an_agent_that_edits_the_real_workspace_is_caught(tmp_path: Path):
    ws = page_workspace(tmp_path)
    command = agent(tmp_path, f"""
        page.write_text(page.read_text().replace("# Grow faster", "# Grow 3x faster"))
        pathlib.Path({str(ws / "notes.md")!r}).write_text("escaped!")
    """)
    _, [cand] = await run(tmp_path, agent_spec(ws, command))
    assert cand["verdict"] == "invalid"
    assert "files of the real workspace changed while the agent ran: notes.md" in cand["reason"]


SIEVE = '''
def count_primes(n: int) -> int:
    """How many primes are smaller than n (sieve of Eratosthenes)."""
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    for p in range(2, int(n ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, n, p)))
    return sum(sieve)
'''


async def test_code_speed_spec_runs_with_a_stand_in_agent(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    shutil.copytree(REPO / "checklists" / "code-speed", tmp_path / "code-speed")
    spec = tmp_path / "code-speed.yaml"
    spec.write_text((REPO / "checklists" / "code-speed.yaml").read_text()
                    .replace("max_rounds: 12", "max_rounds: 1"))
    script = tmp_path / "stand_in_agent.py"
    script.write_text(f"""
import os, pathlib, sys
prompt = sys.stdin.read()
assert "metric `ms`" in prompt and "lower is better" in prompt
pathlib.Path("primes.py").write_text({SIEVE!r})
pathlib.Path(os.environ["AUTORESEARCH_DESCRIPTION"]).write_text("Use a sieve of Eratosthenes")
""")
    monkeypatch.setenv("AUTORESEARCH_AGENT", f"{sys.executable} {script}")
    store, [cand] = await run(tmp_path, spec)

    assert cand["verdict"] == "kept", cand["reason"]
    assert cand["description"] == "Use a sieve of Eratosthenes"
    run_row = store.get_run("code-speed")
    assert run_row["best_score"] < run_row["baseline_score"] / 5
    assert "sieve" in (tmp_path / "code-speed" / "primes.py").read_text()
