"""`?`: every key, what it does, and how steering reaches the engine."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.actions import ACTIONS

#: Display names of the keys Textual spells out.
_KEY_NAMES = {"slash": "/", "question_mark": "?"}


def _actions() -> list[tuple[str, str]]:
    """One line per key of the table of actions (pause and resume share `p`)."""
    rows: dict[str, str] = {}
    for action in ACTIONS:
        key = _KEY_NAMES.get(action.key, action.key)
        line = action.description + (f" (CLI: {action.cli})" if action.cli else "")
        rows[key] = f"{rows[key]}; {line}" if key in rows else line
    return list(rows.items())


KEYS = [
    *_actions(),
    ("enter", "open the selected experiment: diff, evidence, log, record"),
    ("[  ]", "previous / next run"),
    ("1-5", "narrow terminals: show runs, changelog, chart, checklist, workers"),
    ("↑ ↓ home", "move in the changelog; it follows the newest row until you move, home "
                 "follows again"),
    ("tab", "move between panes"),
    ("ctrl+p", "command palette: every action by name"),
    ("ctrl+c", "as q; twice within 2 s forces"),
]


class HelpScreen(ModalScreen[None]):
    """A modal list of keys; any of escape, q or ? closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen VerticalScroll {
        width: 90; max-width: 95%; height: auto; max-height: 90%;
        border: round $accent; background: $panel; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with VerticalScroll():
            yield Static(Text("Keys", style="bold underline"))
            yield Static(table)
            yield Static(Text(
                "\nEvery steering key writes a command row to the store; the engine (in this "
                "process or a headless one) applies it within a second and the result shows "
                "in the changelog (⚑ rows) and the status line. esc closes this.",
                style="dim"))
