"""A skill library for the Messages-API stand-in (tests/fake_anthropic.py), and a stand-in
model for it that reads what its prompt says: the run's changelog (it does not propose a
change it already tried) and the library's playbook (it proposes first the kinds of change
the playbook says helped in other runs, and leaves out those it says never did).

Every skill starts failing four deterministic checks; four of SIXTEEN changes each fix one,
the rest change nothing the checks see. Without a playbook the model draws among the changes
it has not tried; with one it goes straight to the fixes the other runs found. Used by
tests/test_library_playbook.py and bench/library.py --playbook.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path
from typing import Any

from fake_anthropic import PRICES, change, user_text

ANCHOR = "Steps: do the thing."
#: (description, the line it adds, the check it satisfies or None).
CHANGES = [
    ("Add a worked example", "Example: ask for the weekly report, get a table.", "Example:"),
    ("Say when not to use the skill", "Do not use when the data is private.", "Do not use when"),
    ("Describe the output format", "Output: a markdown table.", "Output:"),
    ("List the inputs it needs", "Inputs: a date range.", "Inputs:"),
    ("Add a motivational note", "You can do it!", None),
    ("Add the skill's history", "Written in 2024.", None),
    ("Stress the steps", "These steps matter.", None),
    ("Name the author", "By the platform team.", None),
    ("Add a friendly greeting", "Hello there.", None),
    ("Thank the reader", "Thanks for reading.", None),
    ("Add a version number", "Version 1.", None),
    ("Mention related skills", "See also: other skills.", None),
    ("Add a closing summary", "That is all.", None),
    ("Add a tip about speed", "Be quick.", None),
    ("Add a warning about typos", "Watch for typos.", None),
    ("Add a note on tone", "Keep a calm tone.", None),
]
CHECKS = [check for _, _, check in CHANGES if check]


def write_skill(ws: Path, name: str) -> None:
    path = ws / "skills" / name / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Skill {name}\n\nUse this skill for {name}.\n\n{ANCHOR}\n")


def library_spec(ws: Path, *, stop: str, library: str = "", parallel: int = 1) -> Path:
    """A library over ws/skills/*/SKILL.md with the llm mutator, scored by the checks;
    `stop` is the inside of a flow mapping (`target: 1.0, streak: 1`)."""
    items = "\n".join(f'    - {{name: c{i}, contains: "{c}"}}' for i, c in enumerate(CHECKS))
    text = f"""name: lib
target: {{each: "skills/*/SKILL.md"}}
mutator:
  kind: llm
  model: claude-sonnet-test
  max_retries: 1
  retry_backoff_s: 0.01
  timeout_s: 10
  prices: {PRICES}
evaluate:
  kind: checklist
  produce: {{kind: command, command: "cat {{file}}"}}
  items:
{items}
stop: {{{stop}, max_failures: null}}
parallel: {parallel}
ahead: 0
{library}
"""
    path = ws / "lib.yaml"
    path.write_text(text)
    return path


def _playbook_lists(system: str) -> tuple[list[str], list[str]]:
    """The descriptions under "What helped" and "What never helped" in the prompt."""
    found = re.search(r"<playbook name=\"library [^\"]*\">(.*?)</playbook>", system, re.S)
    if not found:
        return [], []
    book = found[1]
    helped = book.split("## What helped", 1)[-1].split("## What never helped", 1)[0]
    never = book.split("## What never helped", 1)[-1]

    def descriptions(part: str) -> list[str]:
        return [m[1].strip() for m in re.finditer(r"^- (.+?) — ", part, re.M)]

    return descriptions(helped), descriptions(never)


class SkillModel:
    """The stand-in's responder: one change a request, as a model reading its prompt would."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.with_playbook = 0
        self.requests = 0

    def __call__(self, body: dict[str, Any]) -> Any:
        system = "\n\n".join(b.get("text", "") for b in body.get("system") or [])
        user = user_text(body)
        path = re.search(r'<file path="([^"]+)">', system)[1]
        tried = {d for d, _, _ in CHANGES if d in user}
        helped, never = _playbook_lists(system)
        self.requests += 1
        self.with_playbook += bool(helped or never)
        untried = [c for c in CHANGES if c[0] not in tried] or CHANGES
        first = [c for d in helped for c in untried if c[0] == d]
        if first:
            pick = first[0]
        else:
            pool = [c for c in untried if c[0] not in never] or untried
            digest = hashlib.sha256(f"{self.seed}:{path}:{len(tried)}".encode()).digest()
            pick = random.Random(digest).choice(pool)
        return proposal(path, pick[0])


def proposal(path: str, description: str) -> Any:
    """The reply proposing CHANGES' change of this description to the file at `path`."""
    line = next(line for d, line, _ in CHANGES if d == description)
    return change(description, [{"file": path, "search": ANCHOR, "replace": f"{ANCHOR}\n{line}"}])


def target_file(body: dict[str, Any]) -> str:
    system = "\n\n".join(b.get("text", "") for b in body.get("system") or [])
    return re.search(r'<file path="([^"]+)">', system)[1]


async def host_all(db: Path, spec_path: Path) -> Any:
    """Host every run of a spec (one per file of a library) in one host until all are done;
    the store."""
    from engine import library
    from engine.host import Host
    from engine.spec import load_spec
    from engine.store import Store

    store = Store(db)
    host = Host(store)
    for one in library.expand_all([load_spec(spec_path)]):
        host.add(one)
    await host.run_until_done()
    return store
