"""Enter on a ⚑ row of the changelog: what the steering command was, who it aimed at, when
it was asked for and applied, and what the engine did with it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from tui.page_screen import PageScreen, close_binding
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


def command_rows(command: dict[str, Any]) -> list[tuple[str, str]]:
    """The command's fields, (label, value) a line; text that came from a person or the
    engine goes through `line` (printable, one line)."""
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
    return rows


def command_table(command: dict[str, Any]) -> Table:
    """The fields under each other, a long value wrapped under itself (not under the
    labels: at 80 columns a guidance text ran back to the left edge); values are `Text`,
    never read as markup."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True, min_width=10)
    table.add_column()
    for label, value in command_rows(command):
        table.add_row(label, Text(value))
    return table


class CommandScreen(PageScreen):
    """One steering command, in full; escape, q or enter closes it."""

    BINDINGS = [close_binding("enter")]

    def __init__(self, command: dict[str, Any]) -> None:
        super().__init__()
        self.command = command

    def heading(self) -> str:
        return f"⚑ command {self.command.get('id', '')}"

    def body(self) -> Iterable[RenderableType]:
        yield command_table(self.command)
