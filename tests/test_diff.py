"""Diffs of candidates: lines changed in place are written directly, the rest by difflib."""

from __future__ import annotations

import difflib

from hypothesis import given
from hypothesis import strategies as st

from engine.workspace import unified_diff

lines = st.lists(st.sampled_from(["a: 1", "b: 2", "", "# note", "c: [1, 2]", "}", "x: 5"]),
                 min_size=1, max_size=40)


def difflib_diff(old: str, new: str) -> str:
    text = "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True), "a/p", "b/p"))
    return text if text.endswith("\n") or not text else text + "\n"


def apply(diff: str, old: str) -> str:
    """Apply a one-hunk unified diff: what a patch tool would make of it."""
    head, *body = diff.splitlines(keepends=True)[2:]
    start = int(head.split()[1][1:].split(",")[0]) - 1
    old_lines = old.splitlines(keepends=True)
    taken = [line[1:] for line in body if line[0] in " -"]
    assert old_lines[start:start + len(taken)] == taken, "context or removed lines differ"
    given_lines = [line[1:] for line in body if line[0] in " +"]
    return "".join(old_lines[:start] + given_lines + old_lines[start + len(taken):])


@given(lines, st.data())
def test_one_changed_line_makes_a_diff_that_applies(file_lines, data):
    old = "\n".join(file_lines) + "\n"
    k = data.draw(st.integers(0, len(file_lines) - 1))
    changed = list(file_lines)
    changed[k] = data.draw(st.sampled_from(["x: 6", "a: 1", "", "y: 'z'"]))
    new = "\n".join(changed) + "\n"
    diff = unified_diff({"p": old}, {"p": new})
    if old == new:
        assert diff == ""
        return
    assert apply(diff, old) == new
    unique = len(set(file_lines)) == len(file_lines) and changed[k] not in file_lines
    if unique:  # nothing for difflib to align otherwise: the very same text
        assert diff == difflib_diff(old, new)


def test_other_changes_are_difflibs():
    old, new = "a\nb\nc\n", "a\nB\nc\nd\n"
    assert unified_diff({"p": old}, {"p": new}) == difflib_diff(old, new)
    assert unified_diff({"p": "x: 5\n"}, {"p": "x: 6\n"}) == (
        "--- a/p\n+++ b/p\n@@ -1 +1 @@\n-x: 5\n+x: 6\n")


def apply_all(diff: str, old: str) -> str:
    """Apply a unified diff of one or more hunks (in order, as patch does)."""
    old_lines = old.splitlines(keepends=True)
    out, at, lines = [], 0, diff.splitlines(keepends=True)[2:]
    i = 0
    while i < len(lines):
        start = int(lines[i].split()[1][1:].split(",")[0]) - 1
        out += old_lines[at:start]
        at = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            tag, text = lines[i][0], lines[i][1:]
            if tag in " -":
                assert old_lines[at] == text, "context or removed lines differ"
                at += 1
            if tag in " +":
                out.append(text)
            i += 1
    return "".join(out + old_lines[at:])


@given(st.integers(1, 60), st.sets(st.integers(0, 59), min_size=1, max_size=8))
def test_lines_changed_in_place_make_difflibs_diff(size, where):
    old_lines = [f"p{i}: {i}" for i in range(size)]
    new_lines = [f"p{i}: {i + 100}" if i in where else line for i, line in enumerate(old_lines)]
    old, new = "\n".join(old_lines) + "\n", "\n".join(new_lines) + "\n"
    diff = unified_diff({"p": old}, {"p": new})
    assert diff == difflib_diff(old, new)  # unique lines: difflib's very text, hunks and all
    assert (apply_all(diff, old) == new) if diff else old == new


@given(lines, st.data())
def test_repeated_lines_changed_in_place_make_a_diff_that_applies(file_lines, data):
    old = "\n".join(file_lines) + "\n"
    changed = [data.draw(st.sampled_from(["x: 6", "a: 1", "", "}"])) if data.draw(st.booleans())
               else line for line in file_lines]
    new = "\n".join(changed) + "\n"
    diff = unified_diff({"p": old}, {"p": new})
    assert (apply_all(diff, old) == new) if old != new else diff == ""
