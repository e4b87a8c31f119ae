"""`?`: every key, what it does, and how steering reaches the engine."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import RenderableType
from rich.table import Table

from engine.actions import ACTIONS
from tui.page_screen import PageScreen, close_binding

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


class HelpScreen(PageScreen):
    """A modal list of keys; any of escape, q or ? closes it."""

    BINDINGS = [close_binding("question_mark")]

    def heading(self) -> str:
        return "Keys"

    def body(self) -> Iterable[RenderableType]:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        yield table

    def closing(self) -> str:
        return ("\nEvery steering key writes a command row to the store; the engine (in this "
                "process or a headless one) applies it within a second and the result shows "
                "in the changelog (⚑ rows) and the status line. esc closes this.")
