"""The status line: the selected run's state, what it is evaluating now (a spinner and the time
so far), its cost, what stops it next, and the last steering command with what the engine did
with it.

One line, never wrapped: parts are added by importance while they fit the width (issue 12:
at 80 columns it wrapped), so the run, its state and the answer to the last command stay.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.guard import Guarded
from tui.summary import Outlook

#: Braille spinner frames (one a second: the clock tick redraws the line).
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SEP = " · "


class StatusLine(Guarded, Static):
    """One line above the footer."""

    text = ""

    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $boost; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._parts: tuple[Text, list[Text], Text | None] | None = None

    def show(self, name: str, status: Text, cost: str, outlook: list[Outlook],
             last_command: Text | None, busy: Text | None = None) -> None:
        head = Text(no_wrap=True)
        head.append(name, style="bold")
        head.append(" ")
        head.append_text(status)
        extras: list[Text] = []
        if busy is not None:
            extras.append(busy)
        extras.append(Text(cost))
        for i, o in enumerate(outlook[:3]):
            part = Text("stops next: " if i == 0 else "", style="dim")
            part.append(o.text, style="")
            extras.append(part)
        self._parts = (head, extras, last_command)
        self._fit()

    def say(self, text: Text) -> None:
        """A message instead of a run's state (an empty store)."""
        self._parts = (text, [], None)
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        if self._parts is None:
            return
        head, extras, last = self._parts
        width = max(10, (self.size.width or self.app.size.width) - 2)
        tail = Text(" │ ", style="dim") + last if last is not None else Text("")
        text = head.copy()
        for part in extras:  # by importance, while they fit beside the last command
            if text.cell_len + len(SEP) + part.cell_len + tail.cell_len > width:
                break
            text.append(SEP, style="dim")
            text.append_text(part)
        text.append_text(tail)
        text.no_wrap = True
        text.truncate(width, overflow="ellipsis")
        self._set(text)

    def _set(self, text: Text) -> None:
        if text.plain == self.text:
            return
        #: What is shown, as plain text (for tests).
        self.text = text.plain
        # Its height is fixed by the stylesheet (one line): no layout pass.
        self.update(text, layout=False)
