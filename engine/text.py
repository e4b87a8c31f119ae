"""Text from outside (a model's reply, an evaluation's output, a remote worker) is data, never
control: before it reaches a terminal or Rich markup, control characters are shown visibly.

`printable(text)` keeps ordinary text, tabs and (unless `one_line`) line breaks, and shows every
other control character — ESC, BEL, CR, C1 controls, the Unicode line and paragraph separators,
bidi overrides, zero-width characters (U+200B–U+200D, U+2060, U+FEFF) — as a visible
placeholder, so `ESC ] 0 ; title BEL` cannot retitle a tmux pane, `ESC [ 2 J` cannot blank a
screen and `code-spee<U+FEFF>d` does not read as `code-speed`. Rich markup is escaped separately by the UI
(`rich.markup.escape`); this module has no UI import.
"""

from __future__ import annotations

import re

#: C0 controls except tab and line feed, DEL, and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                      r"\u2060\u2066-\u2069\ufeff]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                               r"\u2060\u2066-\u2069\ufeff]")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code == 0x1B:
        return "␛"
    if code == 0x0A:
        return "⏎"
    if code == 0x09:
        return " "
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␀ ␁ … ␟
    if code == 0x7F:
        return "␡"
    return f"<U+{code:04X}>"


def printable(text: str | None, *, one_line: bool = False) -> str:
    """`text` with every control character shown visibly (None gives "")."""
    if not text:
        return ""
    if text.isprintable() and (not one_line or "\t" not in text):
        return text  # the common case: nothing to replace
    pattern = _CONTROL_ONE_LINE if one_line else _CONTROL
    return pattern.sub(_visible, text)
