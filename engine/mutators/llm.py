"""The `llm` mutator: Claude proposes one small change a round, as exact search/replace
edits returned through a forced tool call.

The prompt (engine/mutators/prompt.py) puts its stable parts first, each ending in a cache
breakpoint, so later rounds read instructions, checklist and artifact from the prompt cache.
A reply that is not a usable tool call, or an edit that does not apply or touches a file
that is not a target, raises MutationError carrying the reply's usage: the loop records an
`invalid` experiment with the tokens it cost and goes on.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from engine import spec as specs
from engine.llm import LLMClient, redact
from engine.model import Mutation, MutationError, Proposal, Usage
from engine.mutators.prompt import DiffCache, build_prompt
from engine.redact import secrets_written

TOOL_NAME = "propose_change"
PROPOSE_TOOL = {
    "name": TOOL_NAME,
    "description": "Propose exactly one small, concrete change to the target files, as exact "
                   "search/replace edits.",
    "input_schema": {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description":
                            "One line, under 100 characters, saying what changes "
                            "(e.g. 'Put \"3 days\" in the headline')."},
            "rationale": {"type": "string", "description":
                          "Why this should raise the score: the failing item or part of the "
                          "metric it targets."},
            "edits": {"type": "array", "minItems": 1, "description":
                      "The edits making up the one change, applied in order.",
                      "items": {"type": "object", "properties": {
                          "file": {"type": "string", "description": "a target file's path"},
                          "search": {"type": "string", "description":
                                     "Exact text copied from the current file, long enough to "
                                     "occur exactly once."},
                          "replace": {"type": "string", "description": "The new text."}},
                          "required": ["file", "search", "replace"]}},
        },
        "required": ["description", "rationale", "edits"],
    },
}
FINISH = ("Now propose one small, concrete change with the propose_change tool: a one-line "
          "description, the rationale, and exact search/replace edits on the target files.")


def invalid(reason: str, usage: Usage, description: str = "") -> MutationError:
    """A MutationError the loop records as invalid, with the tokens the reply cost."""
    exc = MutationError(redact(reason))
    exc.usage = usage  # type: ignore[attr-defined]
    exc.description = description or "invalid model reply"  # type: ignore[attr-defined]
    return exc


def identities(spec: specs.Spec) -> list[str]:
    """The SSH identity files a spec's workers name (their contents must never be written)."""
    return [w.identity for w in spec.workers if getattr(w, "identity", None)]


def one_line(text: Any, limit: int = 200) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def apply_edits(files: dict[str, str], edits: Any, targets: list[str],
                protected: list[str]) -> dict[str, str]:
    """Apply search/replace edits to the target files; returns the full new contents of the
    files that changed. Raises ValueError with a reason a person can read."""
    if isinstance(edits, str) or (edits is not None and not isinstance(edits, list)):
        kind = "a string" if isinstance(edits, str) else type(edits).__name__
        raise ValueError(f"edits must be a list of {{file, search, replace}} objects; the reply "
                         f"gave {kind}: {one_line(edits, 80)!r}")
    if not edits:
        raise ValueError("the reply has no edits")
    out: dict[str, str] = {}
    for n, edit in enumerate(edits, 1):
        if not isinstance(edit, dict):
            raise ValueError(f"edit {n} is not an object")
        raw = edit.get("file")
        search, replace = edit.get("search"), edit.get("replace")
        if not isinstance(raw, str) or not isinstance(search, str) or not isinstance(replace, str):
            raise ValueError(f"edit {n} needs string fields file, search and replace")
        path = posixpath.normpath(raw.strip().removeprefix("./"))
        if path.startswith("/") or path == ".." or path.startswith("../"):
            raise ValueError(f"edit {n}: {raw} is outside the workspace")
        if path in protected:
            raise ValueError(f"edit {n}: {path} is protected; only the target files may change")
        if path not in targets:
            raise ValueError(f"edit {n}: {path} is not a target file "
                             f"(targets: {', '.join(targets)})")
        text = out.get(path, files.get(path, ""))
        if search == "":
            if text:
                raise ValueError(f"edit {n}: empty search text, but {path} is not empty")
            out[path] = replace
            continue
        count = text.count(search)
        if count == 0:
            first = one_line(search.strip().splitlines()[0] if search.strip() else search, 80)
            raise ValueError(f"edit {n}: search text not found in {path} (it begins {first!r})")
        if count > 1:
            raise ValueError(f"edit {n}: search text occurs {count} times in {path}; "
                             "it must occur exactly once")
        out[path] = text.replace(search, replace, 1)
    return {p: c for p, c in out.items() if c != files.get(p)}


class LLMMutator:
    """Proposes mutations with Claude through the Messages API."""

    #: Guidance goes into its next prompts.
    reads_guidance = True

    def __init__(self, config: specs.LLMMutator, spec: specs.Spec,
                 playbooks: list[tuple[str, str]] = (),
                 read_experiment: Callable[[int], dict[str, Any] | None] | None = None) -> None:
        self.config = config
        self.spec = spec
        self.client = LLMClient(config, role="llm mutator")
        #: (name, text) lessons from playbook files and earlier runs (the loop reads them).
        self.playbooks = list(playbooks)
        #: Reads an experiment's row (the loop hands it over): recent attempts' diffs.
        self._read = read_experiment
        self._diffs = DiffCache(config.recent)

    async def propose(self, proposal: Proposal) -> Mutation:
        try:
            return await self._propose(proposal)
        except MutationError:
            raise
        except Exception as exc:  # noqa: BLE001 - a reply we did not foresee is an outcome
            raise invalid(f"the reply could not be used: {type(exc).__name__}: {exc}",
                          getattr(exc, "usage", None) or Usage()) from None

    async def _propose(self, proposal: Proposal) -> Mutation:
        if self._read is not None:
            self._diffs.fill(proposal.changelog, self._read)
        prompt = build_prompt(self.spec, proposal, recent=self.config.recent,
                              playbooks=self.playbooks, finish=FINISH)
        mark = self.client.cache_control()
        # Breakpoints where the prefix repeats: the instructions (the whole run), the best
        # version (until a keep), and the end of the append-only history (next round's
        # prefix); the turn after it is new every round.
        history = [{"type": "text", "text": block} for block in prompt.history]
        if history:
            history[-1]["cache_control"] = mark
        reply = await self.client.create(
            system=[{"type": "text", "text": prompt.stable, "cache_control": mark},
                    {"type": "text", "text": prompt.artifact, "cache_control": mark}],
            messages=[{"role": "user", "content": [*history,
                                                   {"type": "text", "text": prompt.turn}]}],
            tools=[PROPOSE_TOOL], tool=TOOL_NAME)
        args = reply.tool_input(TOOL_NAME)
        if args is None:
            raise invalid(f"the model answered without a usable {TOOL_NAME} call: "
                          f"{reply.describe(TOOL_NAME)}", reply.usage)
        description = redact(one_line(args.get("description"))) or "(no description)"
        if reply.stop_reason == "max_tokens":
            raise invalid(f"the reply was cut off at max_tokens ({self.config.max_tokens}); "
                          "raise mutator.max_tokens", reply.usage, description)
        try:
            files = apply_edits(proposal.best_files, args.get("edits"), self.spec.target.files,
                                self.spec.target.protected)
        except ValueError as exc:
            raise invalid(str(exc), reply.usage, description) from None
        if not files:
            raise invalid("the edits change nothing", reply.usage, description)
        leaked = secrets_written(files, proposal.best_files, identities(self.spec))
        if leaked:
            raise invalid(f"the edit would write {leaked}; refused",
                          reply.usage, description)
        rationale = str(args.get("rationale") or "").strip()
        return Mutation(description, files, redact(rationale), usage=reply.usage)

    async def close(self) -> None:
        """The HTTP client's connections, closed on the loop that opened them (left to the
        garbage collector, they were closed on a loop already closed: one warning each)."""
        await self.client.close()

    def feedback(self, mutation: Mutation, verdict: str) -> None:
        """Nothing to learn here: the next prompt carries the changelog with every verdict."""
