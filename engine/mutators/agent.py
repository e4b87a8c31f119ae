"""The `agent` mutator: a coding-agent CLI (`claude -p`, `codex exec`, `aider --message`...)
makes the round's change in a scratch copy of the workspace, and the engine reads back what
it changed.

The agent gets the same prompt as the `llm` mutator, on stdin and in the file named by
$AUTORESEARCH_PROMPT, and runs in its own process group, killed on timeout. Afterwards the
scratch copy is compared with what was staged: changed target files become the mutation;
a change to any other file (or a deleted target) makes the experiment `invalid`, and the
scratch copy, with all of it, is thrown away. The real workspace's target and protected
files are watched too, in case an agent wanders out of its folder.
"""

from __future__ import annotations

import asyncio
import difflib
import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import spec as specs
from engine.llm import redact
from engine.model import Mutation, Proposal, Usage
from engine.mutators.agent_cost import agent_usage
from engine.mutators.llm import identities, invalid, one_line
from engine.mutators.prompt import DiffCache, build_prompt
from engine.redact import secrets_written
from engine.workers.local import run_local
from engine.workspace import Workspace

#: Files coding agents and the programs they run leave behind; never counted as changes.
AGENT_LITTER = (".aider*", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache",
                ".mypy_cache", ".claude", ".codex")
#: Output kept from the agent when it states no rationale of its own.
TAIL_CHARS = 2000

FINISH = """\
How to work: you are in a scratch copy of the workspace (the current folder). Make the one
change by editing the target files in place: {targets}. Do not create, edit or delete any other
file; any other change voids the attempt. Do not run git.
When done, write a one-line description of the change into the file named by the environment
variable AUTORESEARCH_DESCRIPTION (or print a last line `DESCRIPTION: <one line>`), and print a
line `RATIONALE: <why it should raise the score>`."""

Snapshot = dict[str, tuple[int, int]]


def snapshot(root: Path, ignore: list[str]) -> Snapshot:
    """Size and mtime of every file under root, skipping ignored names."""
    out: Snapshot = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not _ignored(d, ignore)]
        for name in names:
            if _ignored(name, ignore):
                continue
            path = Path(folder, name)
            st = path.lstat()
            out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _ignored(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


class AgentMutator:
    """Runs a coding-agent command once a round in a scratch copy of the workspace."""

    #: Guidance goes into its prompt.
    reads_guidance = True

    def __init__(self, config: specs.AgentMutator, spec: specs.Spec,
                 read_experiment: Callable[[int], dict[str, Any] | None] | None = None) -> None:
        self.config = config
        self.spec = spec
        self.targets = list(spec.target.files)
        self.workspace = Workspace(spec.workspace, spec.target.files, spec.target.protected,
                                   spec.target.ignore, spec.name, spec.path)
        self.ignore = [*spec.target.ignore, *AGENT_LITTER]
        #: Reads an experiment's row (the loop hands it over): recent attempts' diffs.
        self._read = read_experiment
        self._diffs = DiffCache(config.recent)

    async def propose(self, proposal: Proposal) -> Mutation:
        if self._read is not None:
            self._diffs.fill(proposal.changelog, self._read)
        prompt = build_prompt(self.spec, proposal, recent=self.config.recent,
                              finish=FINISH.format(targets=", ".join(self.targets))).whole()
        folder = await asyncio.to_thread(self.workspace.stage, proposal.best_files)
        scratch = Path(tempfile.mkdtemp(prefix="ar-agent-"))
        try:
            return await self._attempt(folder, scratch, prompt, proposal.best_files)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def _attempt(self, folder: Path, scratch: Path, prompt: str,
                       best: dict[str, str]) -> Mutation:
        cfg = self.config
        prompt_file, desc_file = scratch / "prompt.md", scratch / "description.txt"
        prompt_file.write_text(prompt, encoding="utf-8")
        before = await asyncio.to_thread(snapshot, folder, self.ignore)
        watched = [*self.targets, *self.spec.target.protected]
        real_before = await asyncio.to_thread(self._real_state, watched)
        env = {"AUTORESEARCH_PROMPT": str(prompt_file), "AUTORESEARCH_DESCRIPTION": str(desc_file),
               "AUTORESEARCH_TARGETS": " ".join(self.targets), "AUTORESEARCH_RUN": self.spec.name}
        result = await run_local(cfg.command, folder, timeout=cfg.timeout_s, stdin=prompt, env=env)
        reported, said = agent_usage(result.output, cfg.prices)
        usage = reported or Usage()  # what the agent says it cost: the experiment's mutator cost
        output = redact(said)
        self._check_real_workspace(real_before, watched, usage)
        if result.timed_out:
            raise invalid(f"the agent did not finish within {cfg.timeout_s:g}s and was killed",
                          usage, "agent timed out")
        if result.exit_code != 0:
            last = one_line((output.strip().splitlines() or [""])[-1], 200)
            raise invalid(f"the agent exited with status {result.exit_code}: {last}", usage,
                          "agent failed")
        after = await asyncio.to_thread(snapshot, folder, self.ignore)
        touched = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        outside = sorted(p for p in touched if p not in self.targets
                         and not _same_file(folder / p, self.workspace.root / p))
        description = self._description(desc_file, output)
        if outside:
            shown = ", ".join(outside[:8]) + (f" and {len(outside) - 8} more" if len(outside) > 8 else "")
            raise invalid(f"the agent changed files outside the targets (undone): {shown}",
                          usage, description or "agent edit outside the targets")
        files: dict[str, str] = {}
        for rel in self.targets:
            path = folder / rel
            if not path.is_file():
                raise invalid(f"the agent deleted the target file {rel}", usage,
                              description or "agent deleted a target")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise invalid(f"the agent left {rel} as something other than UTF-8 text", usage,
                              description or "agent broke a target") from None
            if text != best.get(rel):
                files[rel] = text
        if not files:
            raise invalid("the agent changed nothing", usage, description or "agent: no change")
        leaked = secrets_written(files, best, identities(self.spec))
        if leaked:
            raise invalid(f"the edit would write {leaked}; refused", usage,
                          description or "agent wrote a secret")
        return Mutation(description or _fallback_description(files, best), files,
                        _rationale(output), usage=usage)

    def _real_state(self, watched: list[str]) -> Snapshot:
        root = self.workspace.root
        out: Snapshot = {}
        for rel in watched:
            path = root / rel
            if path.is_file():
                st = path.stat()
                out[rel] = (st.st_size, st.st_mtime_ns)
        return out

    def _check_real_workspace(self, before: Snapshot, watched: list[str],
                              usage: Usage) -> None:
        """Files of the real workspace that changed while the agent ran make the attempt invalid.

        Nothing is written back here: a veto or pin may have moved the best version meanwhile,
        and the loop rewrites every target file at its next keep (and on resume) anyway."""
        now = self._real_state(watched)
        changed = sorted({rel for rel in set(before) | set(now) if before.get(rel) != now.get(rel)})
        if not changed:
            return
        raise invalid(f"files of the real workspace changed while the agent ran: "
                      f"{', '.join(changed)} (an agent must edit only its scratch copy; if it "
                      "did this, restore them, e.g. with git checkout)", usage,
                      "agent touched the real workspace")

    @staticmethod
    def _description(desc_file: Path, output: str) -> str:
        if desc_file.is_file():
            lines = desc_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            if lines and lines[0].strip():
                return redact(one_line(lines[0]))
        found = re.findall(r"^\s*DESCRIPTION:\s*(.+)$", output, flags=re.MULTILINE)
        return one_line(found[-1]) if found else ""

    def feedback(self, mutation: Mutation, verdict: str) -> None:
        """The agent reads the changelog in its next prompt; nothing to keep here."""


def _rationale(output: str) -> str:
    found = re.findall(r"^\s*RATIONALE:\s*(.+)$", output, flags=re.MULTILINE)
    if found:
        return found[-1].strip()
    tail = output.strip()[-TAIL_CHARS:]
    return f"agent output (tail):\n{tail}" if tail else ""


def _fallback_description(files: dict[str, str], best: dict[str, str]) -> str:
    added = removed = 0
    for rel, text in files.items():
        for line in difflib.unified_diff(best.get(rel, "").splitlines(), text.splitlines(),
                                         lineterm="", n=0):
            if line.startswith("+") and not line.startswith("+++"):
                added += 1
            elif line.startswith("-") and not line.startswith("---"):
                removed += 1
    return f"agent edit of {', '.join(sorted(files))} (+{added} −{removed} lines)"

