"""The ⚑ row's detail (enter on a command in the changelog): what it was, when, its outcome;
text from a person or the engine shown as text, never as markup or terminal codes."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from tui.command_screen import command_rows, command_table


def plain(command: dict) -> str:
    return " ".join(f"{label} {value}" for label, value in command_rows(command))


def test_a_command_s_detail_says_what_when_and_what_came_of_it() -> None:
    shown = plain({"id": 3, "verb": "veto", "target": 42, "argument": None,
                   "created": 1000.0, "applied": 1001.5, "result": "#42 vetoed and reverted"})
    assert "veto — revert an experiment" in shown and "#42" in shown
    assert "(1.5 s later)" in shown and "#42 vetoed and reverted" in shown


def test_a_waiting_command_and_hostile_text() -> None:
    command = {"id": 4, "verb": "guide", "target": None,
               "argument": "[bold]try[/bold] \x1b[31mred\x1b[0m\nline two",
               "created": 1000.0, "applied": None, "result": None}
    shown = plain(command)
    assert "waiting for the engine" in shown
    assert "[bold]try[/bold]" in shown  # literal, not markup
    assert "\x1b" not in shown and "line two" in shown
    values = command_table(command).columns[1].cells
    assert all(isinstance(v, Text) and not v.spans for v in values)  # never markup


def test_a_long_value_wraps_under_itself_not_under_the_labels() -> None:
    console = Console(width=60, record=True)
    console.print(command_table({"id": 5, "verb": "guide", "target": None,
                                 "argument": "prefer a smaller hidden layer " * 4,
                                 "created": 1000.0, "applied": None, "result": None}))
    lines = console.export_text().splitlines()
    text = [i for i, row in enumerate(lines) if row.startswith("text ")][0]
    assert lines[text + 1].startswith(" " * 11) and lines[text + 1].strip()
