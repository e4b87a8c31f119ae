"""Carrying a mutation over to another parent: the change a proposal made to the files of
the version it was proposed from, made to another version's files instead.

A proposal made ahead (engine/stream.py) assumes its parent stays; when a keep replaces it,
the change is usually still meaningful on the new best (it edits other lines). Each hunk of
the change (old lines → new lines) is applied where its old lines, with a line of context on
each side, occur exactly once in the other version; any hunk that does not is a conflict,
and the proposal is abandoned instead.
"""

from __future__ import annotations

import difflib

#: Lines of context a hunk must find unchanged around it.
CONTEXT = 1


def rebase(old: dict[str, str], new: dict[str, str], changed: dict[str, str],
           ) -> dict[str, str] | None:
    """`changed` (full contents of files, made from `old`) made from `new` instead; None
    when a hunk conflicts."""
    out: dict[str, str] = {}
    for path, text in changed.items():
        before, after = old.get(path, ""), new.get(path, "")
        if before == after:
            out[path] = text
            continue
        moved = _rebase_text(before, after, text)
        if moved is None:
            return None
        out[path] = moved
    return out


def _rebase_text(before: str, after: str, text: str) -> str | None:
    a, b, target = (before.splitlines(keepends=True), text.splitlines(keepends=True),
                    after.splitlines(keepends=True))
    hunks = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
             if op[0] != "equal"]
    # Applied last to first, so earlier positions stay valid.
    for _tag, i1, i2, j1, j2 in reversed(hunks):
        lo, hi = max(i1 - CONTEXT, 0), min(i2 + CONTEXT, len(a))
        needle = a[lo:hi]
        at = _only_match(target, needle)
        if at is None:
            return None
        start = at + (i1 - lo)
        target[start:start + (i2 - i1)] = b[j1:j2]
    return "".join(target)


def _only_match(lines: list[str], needle: list[str]) -> int | None:
    """Where `needle` occurs in `lines`, if exactly once (an empty needle: nowhere safe)."""
    if not needle:
        return None
    n = len(needle)
    found = [k for k in range(len(lines) - n + 1) if lines[k:k + n] == needle]
    return found[0] if len(found) == 1 else None
