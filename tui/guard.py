"""Drawing never ends the app: a widget whose rendering raises shows a one-line note in its
place, and a pane whose data step raises (see `guarded`) is marked the same way.

A dashboard watched for hours over SSH must outlive one odd value that a chart library or a
renderer chokes on (issue 12: plotext log-transformed its data again on every render, and a
`ValueError` ended the app). The note names the error; the next successful draw clears it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.css.query import NoMatches
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import visualize

from engine.text import printable

F = TypeVar("F", bound=Callable[..., Any])

#: The note's style: visible on any theme without relying on colour alone (the ⚠ says it).
NOTE_STYLE = Style(color="red", bold=True)


def note(exc: BaseException) -> str:
    """The one line shown for a failure: what failed, never a traceback."""
    detail = " ".join(printable(str(exc), one_line=True).split())[:120]
    return f"⚠ could not draw this: {type(exc).__name__}" + (f": {detail}" if detail else "")


class Guarded:
    """Mixin for widgets: drawing errors become a note instead of ending the app.

    `fail(exc)` shows the note until `recovered()` (a data step that raised, see `guarded`);
    an exception while rendering shows it for that frame, and the next frame tries again.
    """

    #: The note shown now, if any (tests read it).
    draw_error: str | None = None

    def fail(self, exc: BaseException) -> None:
        self.draw_error = note(exc)
        self.refresh()  # type: ignore[attr-defined]

    def recovered(self) -> None:
        if self.draw_error is not None:
            self.draw_error = None
            self.refresh()  # type: ignore[attr-defined]

    def _render(self) -> Any:
        # What the widget draws, also asked for by layout (a height of `auto`): a failure
        # here is the note as the widget's content. (Textual is pinned exactly: this hook
        # is private, and tests/test_tui_render.py would catch it moving.)
        widget: Any = self
        if self.draw_error is None:
            try:
                return super()._render()  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - any drawing error, by design
                widget.log.error(f"drawing {widget!r} failed: {exc!r}")
                return visualize(widget, Text(" " + note(exc), style=NOTE_STYLE))
        return visualize(widget, Text(" " + self.draw_error, style=NOTE_STYLE))

    def render_lines(self, crop: Region) -> list[Strip]:
        widget: Any = self
        if self.draw_error is None:
            try:
                return super().render_lines(crop)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - any drawing error, by design
                widget.log.error(f"drawing {widget!r} failed: {exc!r}")
                # Shown for this frame only: the next refresh tries to draw again.
                return _note_lines(note(exc), crop)
        return _note_lines(self.draw_error, crop)


def _note_lines(text: str, crop: Region) -> list[Strip]:
    blank = Strip.blank(crop.width)
    lines = [blank] * crop.height
    if crop.y == 0 and crop.height:
        line = Strip([Segment(" " + text, NOTE_STYLE)])
        lines[0] = line.crop_extend(crop.x, crop.x + crop.width, None)
    return lines


class _Step:
    """The guard around one drawing step: an exception marks the pane `selector` and is
    swallowed (the step returns None); a step that ends well clears the mark."""

    def __init__(self, app: Any, selector: str) -> None:
        self.app, self.selector = app, selector

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            _clear(self.app, self.selector)
            return False
        if isinstance(exc, NoMatches) or not isinstance(exc, Exception):
            return False  # NoMatches: the app is closing (its callers decide)
        _mark(self.app, self.selector, exc)
        return True


def guarded(selector: str) -> Callable[[F], F]:
    """For the app's drawing steps (data → widget): an exception marks the pane `selector`
    with a note (or, if that pane cannot show one, notifies once) instead of ending the app."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _Step(self, selector):
                return method(self, *args, **kwargs)
            return None  # the step raised and was marked

        return run  # type: ignore[return-value]

    return wrap


def guarded_async(selector: str) -> Callable[[F], F]:
    """`guarded` for a coroutine method."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _Step(self, selector):
                return await method(self, *args, **kwargs)
            return None  # the step raised and was marked

        return run  # type: ignore[return-value]

    return wrap


def _target(app: Any, selector: str) -> Any:
    try:
        widget = app.dash.query_one(selector)
    except NoMatches:
        return None
    return widget if isinstance(widget, Guarded) else None


def _mark(app: Any, selector: str, exc: Exception) -> None:
    app.log.error(f"drawing {selector} failed: {exc!r}")
    widget = _target(app, selector)
    if widget is not None:
        widget.fail(exc)
        return
    told: set[str] = app.__dict__.setdefault("_draw_notes", set())
    text = note(exc)
    if (selector, text) not in told:  # once per pane and error: a poll repeats it twice a second
        told.add((selector, text))  # type: ignore[arg-type]
        app.notify(escape(f"{selector.lstrip('#')} pane: {printable(text)}"), severity="error",
                   timeout=8)


def _clear(app: Any, selector: str) -> None:
    widget = _target(app, selector)
    if widget is not None:
        widget.recovered()
