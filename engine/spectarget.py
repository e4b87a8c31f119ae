"""The spec's `target:` section: the workspace, the files a run changes (or `each:`, one run
per matching file), the protected ones and what a candidate copy skips."""

from __future__ import annotations

from pydantic import field_validator, model_validator

from engine.specbase import Strict

#: Names always skipped when a candidate copy is made; `target.ignore` adds to them.
DEFAULT_IGNORE = [".git", "__pycache__", ".venv", "node_modules", ".pytest_cache"]


class Target(Strict):
    workspace: str = "."
    files: list[str] = []
    #: A glob (relative to the spec): one run per matching file, its only target (library.py).
    each: str | None = None
    protected: list[str] = []
    #: Names skipped when a candidate copy is made (big or irrelevant folders): added to
    #: DEFAULT_IGNORE, never replacing it (a forgotten `.git` would be copied every round);
    #: `!name` takes a default back out.
    ignore: list[str] = list(DEFAULT_IGNORE)

    @field_validator("ignore")
    @classmethod
    def _added_to_defaults(cls, value: list[str]) -> list[str]:
        dropped = {v[1:] for v in value if v.startswith("!")}
        added = [v for v in value if not v.startswith("!")]
        return [n for n in dict.fromkeys([*DEFAULT_IGNORE, *added]) if n not in dropped]

    @model_validator(mode="after")
    def _files_or_each(self) -> Target:
        if not self.files and not (self.each or "").strip():
            raise ValueError("give `files` (a list of target files) or `each` (a glob)")
        return self
