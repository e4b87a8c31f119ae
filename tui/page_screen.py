"""A modal page to read: centred over the dashboard, scrolled when taller than the terminal,
closed by escape or q (and a key of its own). The help (`?`, tui/help_screen.py) and a
steering command's details (Enter on a ⚑ row, tui/command_screen.py) are such pages."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def close_binding(*keys: str) -> Binding:
    """Escape, q and `keys` close the page."""
    return Binding(",".join(["escape", "q", *keys]), "app.pop_screen", "Close")


class PageScreen(ModalScreen[None]):
    """A heading, the page's own body, and a dim closing line, in one scrolled box."""

    DEFAULT_CSS = """
    PageScreen { align: center middle; }
    PageScreen VerticalScroll {
        width: 90; max-width: 95%; height: auto; max-height: 90%;
        border: round $accent; background: $panel; padding: 0 1;
    }
    """
    BINDINGS = [close_binding()]

    def heading(self) -> str:
        raise NotImplementedError

    def body(self) -> Iterable[RenderableType]:
        """What the page shows under its heading, one Static each."""
        raise NotImplementedError

    def closing(self) -> str:
        """The dim last line: at least how to close the page."""
        return "esc closes this"

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(self.heading(), style="bold underline"))
            for part in self.body():
                yield Static(part)
            yield Static(Text(self.closing(), style="dim"))
