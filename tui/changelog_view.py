"""The changelog's table: a line-API `ScrollView` (as toolong renders huge logs) rather than a
DataTable, because a DataTable re-renders every visible row whenever any row changes.

Here each row is rendered once into a cached strip, keyed by (row, version, width, cursor):
a new experiment renders one line, a landed verdict re-renders one line, and scrolling or
a row pushed down the screen reuses what is cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip

from tui.scroll_view import CursorView, cursor_bindings

#: The gap between cells: a style of its own that looks like none, so each cell is its own
#: segment whatever the colours. Adjacent plain cells merged into one, and a renderer that
#: spaces a segment's glyphs to fit its width (SVG's textLength: the README's pictures)
#: shifted the later columns of rows split differently (issue 12: rows with a negative delta).
_GAP = Style(blink=False)


@dataclass
class Column:
    """A column: its key, header label, width (None: takes the rest) and alignment."""

    key: str
    label: str
    width: int | None
    right: bool = False


@dataclass
class Row:
    """One line of the changelog."""

    key: str
    cells: dict[str, Text]
    #: Sort key; rows are shown with the largest first (newest first).
    order: tuple[Any, ...]
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ChangelogView(CursorView):
    """Rows newest first under a fixed header, with a row cursor."""

    BINDINGS: ClassVar[list[BindingType]] = cursor_bindings(
        Binding("enter", "choose", "Open", key_display="⏎"), "Newest", "Oldest")
    CACHE_SIZE = 1024
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "changelog--header", "changelog--cursor", "changelog--cursor-blurred"}
    DEFAULT_CSS = """
    ChangelogView > .changelog--header { text-style: bold; color: $text-accent; }
    ChangelogView > .changelog--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
        text-style: bold;
    }
    ChangelogView > .changelog--cursor-blurred { background: $block-cursor-blurred-background; }
    """

    class Chosen(Message):
        """Enter on a row."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class Moved(Message):
        """The cursor moved to a row (index from the top)."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ChangelogView.Moved)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns: list[Column] = []
        self.rows: dict[str, Row] = {}
        self._order: list[str] = []
        self.cursor_row = 0
        #: The cursor follows the newest row until the person moves it (home follows again).
        self.following = True
        #: How many row strips were rendered (the benchmark checks updates stay cheap).
        self.rendered = 0

    # ------------------------------------------------------------ data

    @property
    def row_count(self) -> int:
        return len(self._order)

    def keys(self) -> list[str]:
        return list(self._order)

    def set_columns(self, columns: list[Column]) -> None:
        self.columns = columns
        self._cache.clear()
        self.refresh()

    def clear(self) -> None:
        self.rows.clear()
        self._order.clear()
        self.cursor_row = 0
        self.following = True
        self._cache.clear()
        self._resize()
        self.scroll_to(y=0, animate=False)

    def add(self, rows: list[Row]) -> None:
        """Add rows; the cursor stays on its row unless it follows the newest."""
        if not rows:
            return
        following = self.following
        keep = self.selected_key()
        top_before = self._order[0] if self._order else None
        for row in rows:
            self.rows[row.key] = row
        self._order = sorted(self.rows, key=lambda k: self.rows[k].order, reverse=True)
        if not following and keep is not None:
            shift = self._order.index(keep) - self.cursor_row
            self.cursor_row += shift
            if self.scroll_y > 0 and shift > 0:  # keep what is being read where it is
                self.scroll_to(y=self.scroll_y + shift, animate=False)
        elif top_before != (self._order[0] if self._order else None):
            self.post_message(self.Moved(0))
        self._resize()
        self.refresh()

    def update(self, key: str, cells: dict[str, Text]) -> None:
        row = self.rows[key]
        if all(row.cells.get(k) is not None and row.cells[k].plain == v.plain and
               row.cells[k].spans == v.spans for k, v in cells.items()):
            return
        row.cells.update(cells)
        row.version += 1
        self.refresh_row(key)

    def get_cell(self, key: str, column: str) -> Text:
        return self.rows[key].cells.get(column) or Text("")

    def row_index(self, key: str) -> int:
        return self._order.index(key)

    def selected_key(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def move_cursor(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        old, self.cursor_row = self.cursor_row, row
        if old != row:
            self._refresh_index(old)
            self._refresh_index(row)
            self.post_message(self.Moved(row))
        self._scroll_to_cursor()

    # ------------------------------------------------------------ rendering

    def _resize(self) -> None:
        size = Size(self.size.width, len(self._order) + 1)
        if size == self.virtual_size:
            return
        bar_needed = size.height > self.size.height
        if self.is_mounted and self.size.height and bar_needed == self.show_vertical_scrollbar:
            # Same scrollbars, only a longer list: setting `virtual_size` would lay out (and
            # re-render) the whole screen on every new row; update the scrollbar instead.
            self.set_reactive(ChangelogView.virtual_size, size)
            if bar_needed:
                self.vertical_scrollbar.window_virtual_size = size.height
            self.refresh()
        else:
            self.virtual_size = size

    def refresh_row(self, key: str) -> None:
        try:
            self._refresh_index(self._order.index(key))
        except ValueError:
            pass

    def _refresh_index(self, index: int) -> None:
        y = index + 1 - round(self.scroll_y)
        if 1 <= y < self.size.height:
            self.refresh_line(y)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # the scrollbar takes the rest
        if y == 0:
            return self._header(width)
        index = round(self.scroll_y) + y - 1
        if index >= len(self._order):
            return Strip.blank(width, self.rich_style)
        row = self.rows[self._order[index]]
        cursor = index == self.cursor_row
        return self._cached((row.key, row.version, width, cursor, cursor and self.has_focus),
                            lambda: self._render_row(row, width, cursor))

    def _widths(self, width: int) -> list[int]:
        fixed = sum(c.width or 0 for c in self.columns) + len(self.columns)
        return [c.width if c.width is not None else max(8, width - fixed) for c in self.columns]

    def _header(self, width: int) -> Strip:
        return self._cached(("header", width), lambda: self._strip(
            {c.key: Text(c.label) for c in self.columns}, width,
            self.get_component_rich_style("changelog--header")))

    def _render_row(self, row: Row, width: int, cursor: bool) -> Strip:
        self.rendered += 1
        style = Style()
        if cursor:
            style = self.get_component_rich_style(
                "changelog--cursor" if self.has_focus else "changelog--cursor-blurred")
        return self._strip(row.cells, width, style)

    def _strip(self, cells: dict[str, Text], width: int, over: Style) -> Strip:
        line = Text(no_wrap=True, end="")
        for column, w in zip(self.columns, self._widths(width), strict=True):
            cell = (cells.get(column.key) or Text("")).copy()
            cell.no_wrap = True
            cell.truncate(w, overflow="ellipsis")
            cell.align("right" if column.right else "left", w)
            line.append_text(cell)
            line.append(" ", _GAP)
        segments: Any = line.render(self.app.console)
        if over:  # the cursor's colours go over the cells' own
            segments = Segment.apply_style(segments, None, over)
        return Strip(list(segments)).crop_extend(0, width, over or None) \
            .apply_style(self.rich_style)

    # ------------------------------------------------------------ keys and mouse

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    # The hooks of CursorView: a row a line, under the header line.

    def _cursor_index(self) -> int:
        return self.cursor_row

    def _count(self) -> int:
        return len(self._order)

    def _page_size(self) -> int:
        return self.size.height - 2

    def _index_at(self, y: int) -> int | None:
        return round(self.scroll_y) + y - 1 if y >= 1 else None

    def _go(self, index: int, follow: bool) -> None:
        self.following = follow  # home: follow the newest again; any other move stops it
        self.move_cursor(index)

    def _refresh_cursor(self) -> None:
        self._refresh_index(self.cursor_row)

    def action_choose(self) -> None:
        key = self.selected_key()
        if key is not None:
            self.post_message(self.Chosen(key))
