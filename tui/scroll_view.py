"""What the app's virtualized lists share: a line-API `ScrollView` with a cursor whose lines
are rendered once into cached strips (the runs list, tui/runs_view.py; the changelog's table,
tui/changelog_view.py).

This base owns the mechanics both lists had written out twice — the strip cache and its
clearing on a new theme (a cached strip holds its colours), the cursor keys and the mouse,
redrawing the cursor on focus and blur, and re-measuring on a resize. A list supplies what
differs: how many lines an entry takes and where the cursor is (`_cursor_index`, `_count`,
`_page_size`, `_index_at`), how it moves (`_go`), and how it draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.scroll_view import ScrollView

from tui.guard import Guarded

T = TypeVar("T")


def cursor_bindings(choose: Binding, first: str, last: str) -> list[BindingType]:
    """The keys of a cursor list: `choose` (Enter), arrows, pages, and home/end, whose
    descriptions (`first`, `last`) name what is at each end."""
    return [
        choose,
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "jump(0)", first, show=False),
        Binding("end,ctrl+end", "jump(-1)", last, show=False),
    ]


class CursorView(Guarded, ScrollView, can_focus=True, inherit_bindings=False):
    """A virtualized list with a cursor; subclasses say how entries are laid out and drawn.

    Textual calls an `on_*` handler of every class in the MRO, so subclasses do not define
    these handlers again (they would run twice); they fill in the hooks below instead.
    """

    DEFAULT_CSS = """
    CursorView { overflow-x: hidden; overflow-y: auto; height: 1fr; }
    """
    #: How many rendered entries the cache keeps.
    CACHE_SIZE: ClassVar[int] = 256

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cache: LRUCache[tuple[Any, ...], Any] = LRUCache(self.CACHE_SIZE)

    def _cached(self, key: tuple[Any, ...], draw: Callable[[], T]) -> T:
        """What `draw` renders for `key`, rendered once while the key stays cached."""
        drawn = self._cache.get(key)
        if drawn is None:
            drawn = self._cache[key] = draw()
        return drawn  # type: ignore[no-any-return]

    # ------------------------------------------------------------ hooks

    def _cursor_index(self) -> int:
        """The index of the entry under the cursor (0 when there is none)."""
        raise NotImplementedError

    def _count(self) -> int:
        """How many entries there are."""
        raise NotImplementedError

    def _page_size(self) -> int:
        """How many entries a page key moves by (at least one is moved)."""
        raise NotImplementedError

    def _index_at(self, y: int) -> int | None:
        """The entry at line `y` of the widget (None: not an entry, e.g. a header)."""
        raise NotImplementedError

    def _go(self, index: int, follow: bool) -> None:
        """Move the cursor to entry `index` (clamped); `follow`: home was pressed."""
        raise NotImplementedError

    def _resize(self) -> None:
        """Set the virtual size from the entries and the widget's size."""
        raise NotImplementedError

    def _resized(self) -> None:
        """After a resize has been measured (nothing by default)."""

    def _refresh_cursor(self) -> None:
        """Redraw what shows the cursor (its colours change with focus)."""
        self.refresh()

    def action_choose(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ keys and mouse

    def action_cursor(self, by: int) -> None:
        self._go(self._cursor_index() + by, follow=False)

    def action_page(self, by: int) -> None:
        self._go(self._cursor_index() + by * max(1, self._page_size()), follow=False)

    def action_jump(self, where: int) -> None:
        self._go(0 if where == 0 else self._count() - 1, follow=where == 0)

    def on_click(self, event: events.Click) -> None:
        index = self._index_at(event.y)
        if index is None:
            return
        self._go(index, follow=False)
        if event.chain == 2:
            self.action_choose()

    def on_resize(self) -> None:
        self._resize()
        self._resized()

    def on_mount(self) -> None:
        # Entries are cached as drawn, colours included: a new theme draws them again.
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())

    def _restyle(self) -> None:
        self._cache.clear()
        self.refresh()

    def on_focus(self) -> None:
        self._refresh_cursor()

    def on_blur(self) -> None:
        self._refresh_cursor()
