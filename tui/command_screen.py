"""Enter on a ⚑ row of the changelog: what the steering command was, who it aimed at, when
it was asked for and applied, and what the engine did with it."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.safe import line

#: What each verb asks of the engine (a verb not listed is shown as it is).
VERBS = {"pause": "pause the run after the experiments in flight",
         "resume": "resume a paused run", "stop": "stop the run",
         "veto": "revert an experiment whatever its score",
         "pin": "keep an experiment whatever its score",
         "guide": "guidance for the mutator's next proposals"}


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def command_text(command: dict[str, Any]) -> Text:
    """The command's fields, one a line; text that came from a person or the engine goes
    through `line` (printable, one line) and is never read as markup."""
    verb = line(command.get("verb") or "")
    rows = [("command", f"{verb} — {VERBS.get(verb, 'a steering command')}")]
    if command.get("target") is not None:
        rows.append(("experiment", f"#{command['target']}"))
    if command.get("argument"):
        rows.append(("text", line(command["argument"])))
    rows.append(("asked", _when(command.get("created"))))
    applied = command.get("applied")
    if applied is None:
        rows.append(("applied", "not yet: waiting for the engine"))
    else:
        waited = max(0.0, applied - (command.get("created") or applied))
        rows.append(("applied", f"{_when(applied)} ({waited:.1f} s later)"))
        rows.append(("outcome", line(command.get("result") or "—")))
    text = Text()
    for label, value in rows:
        text.append(f"{label:<11}", style="bold")
        text.append(value + "\n")
    return text


class CommandScreen(ModalScreen[None]):
    """One steering command, in full; escape, q or enter closes it."""

    DEFAULT_CSS = """
    CommandScreen { align: center middle; }
    CommandScreen VerticalScroll {
        width: 90; max-width: 95%; height: auto; max-height: 90%;
        border: round $accent; background: $panel; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q,enter", "app.pop_screen", "Close")]

    def __init__(self, command: dict[str, Any]) -> None:
        super().__init__()
        self.command = command

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(f"⚑ command {self.command.get('id', '')}",
                              style="bold underline"))
            yield Static(command_text(self.command))
            yield Static(Text("esc closes this", style="dim"))
