"""`?`: every key, what it does, and how steering reaches the engine."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("p", "pause or resume the selected run (the experiment in flight finishes first)"),
    ("v", "veto: the selected experiment if it is in flight or kept (a kept one is reverted, "
          "with what was built on it); any other selected experiment is banned; "
          "a vetoed idea is shown to the mutator as banned"),
    ("i", "pin the selected experiment: keep it whatever its score, protect it from reverts"),
    ("s", "stop the selected run (asks first)"),
    ("g", "guidance: free text that goes into the mutator's next prompts"),
    ("n", "start a run from a spec in checklists/ (or any path)"),
    ("e", "export the selected run's changelog (.md, .tsv or .jsonl by the file name)"),
    ("/", "filter the changelog (enter keeps the filter, esc clears it)"),
    ("enter", "open the selected experiment: diff, evidence, log, record"),
    ("[  ]", "previous / next run"),
    ("1-5", "narrow terminals: show runs, changelog, chart, checklist, workers"),
    ("tab", "move between panes"),
    ("ctrl+p", "command palette: every action by name"),
    ("q", "quit; runs hosted here stop cleanly first (attached: the engine keeps running)"),
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
