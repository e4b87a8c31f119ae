"""The ⚑ row's detail (enter on a command in the changelog): what it was, when, its outcome;
text from a person or the engine shown as text, never as markup or terminal codes."""

from __future__ import annotations

from tui.command_screen import command_text


def test_a_command_s_detail_says_what_when_and_what_came_of_it() -> None:
    shown = command_text({"id": 3, "verb": "veto", "target": 42, "argument": None,
                          "created": 1000.0, "applied": 1001.5,
                          "result": "#42 vetoed and reverted"}).plain
    assert "veto — revert an experiment" in shown and "#42" in shown
    assert "(1.5 s later)" in shown and "#42 vetoed and reverted" in shown


def test_a_waiting_command_and_hostile_text() -> None:
    text = command_text({"id": 4, "verb": "guide", "target": None,
                         "argument": "[bold]try[/bold] \x1b[31mred\x1b[0m\nline two",
                         "created": 1000.0, "applied": None, "result": None})
    shown = text.plain
    assert "waiting for the engine" in shown
    assert "[bold]try[/bold]" in shown  # literal, not markup
    assert "\x1b" not in shown and "line two" in shown
    assert all(not span.style or "bold" in str(span.style) for span in text.spans)
