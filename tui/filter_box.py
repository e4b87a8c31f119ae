"""The filter boxes (`/`) of the changelog and the runs pane: shown and focused at once, and
handed the keys typed in the same burst as `/`.

Keys typed right after `/` in one burst (a fast typist, a paste, an SSH link that bunches
keys) were sent to the focused list before `/` opened the box, and reach the app only after:
they belong in the box (issue 12: "/kept" showed an empty box). The app hands each unhandled
key to `take_typed`. Enter and Escape need no help: bindings follow the focus as it is when
they are handled.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


def open_box(box: Input) -> None:
    """Show the box and focus it now, not after the queued events (see the module's note)."""
    box.add_class("-shown")
    box.screen.set_focus(box)


def take_typed(box: Input, event: events.Key) -> bool:
    """Type `event` into `box` if the box has the focus and the key is a character."""
    if box.app.focused is box and event.is_printable and event.character:
        box.insert_text_at_cursor(event.character)
        return True
    return False
