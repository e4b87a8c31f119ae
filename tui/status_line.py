"""The status line: the selected run's cost so far, what stops it next, and the last steering
command with what the engine did with it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.guard import Guarded
from tui.summary import Outlook


class StatusLine(Guarded, Static):
    """One line (two when narrow: see app.tcss) above the footer."""

    text = ""

    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $boost; }
    """

    def show(self, name: str, status: Text, cost: str, outlook: list[Outlook],
             last_command: Text | None) -> None:
        text = Text(no_wrap=False)
        text.append(name, style="bold")
        text.append(" ")
        text.append_text(status)
        text.append(f" · {cost}")
        if outlook:
            text.append(" · stops next: ", style="dim")
            text.append(" · ".join(o.text for o in outlook[:3]))
        if last_command is not None:
            text.append(" │ ", style="dim")
            text.append_text(last_command)
        self._set(text)

    def say(self, text: Text) -> None:
        """A message instead of a run's state (an empty store)."""
        self._set(text)

    def _set(self, text: Text) -> None:
        if text.plain == self.text:
            return
        #: What is shown, as plain text (for tests).
        self.text = text.plain
        # Its height is fixed by the stylesheet (1 line, 2 when narrow): no layout pass.
        self.update(text, layout=False)
