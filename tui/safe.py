"""Text from outside — a model's reply, an evaluation's output, a remote worker's lines, a
spec's names, a path typed in — made safe for the screen: control characters shown visibly
(`engine.text.printable`: `ESC ] 0 ; … BEL` cannot retitle the terminal, `ESC [ 2 J` cannot
blank it), and, where a string is read as Rich/Textual markup (notifications, labels),
brackets escaped so `[bold red]` is shown as typed, never applied."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text

from engine.text import printable


def shown(text: object, one_line: bool = False) -> str:
    """`text` for a `Text` (which never parses markup): control characters made visible."""
    return printable(None if text is None else str(text), one_line=one_line)


def line(text: object) -> str:
    """`shown` on one line, runs of whitespace folded (a table cell, a title)."""
    return " ".join(shown(text, one_line=True).split())


def markup(text: object) -> str:
    """`text` inside a markup string (notify, Label, Static): visible controls, escaped."""
    return escape(shown(text))


def text(value: object, style: str = "", one_line: bool = False) -> Text:
    """A `Text` of outside text."""
    return Text(line(value) if one_line else shown(value), style=style)
