"""The runs list at library size: a line-API `ScrollView` (as the changelog's table) that
draws only the run cards on screen. Hundreds of runs as `ListItem` widgets took seconds to
mount and lay out, and every poll restyled all of them.

Each card is three lines — name and status; best score and a sparkline of its scores
(Textual's own sparkline renderer); rounds, cost and a third figure that follows the sort
(elapsed time, gain or cost today, last keep) — rendered once into cached strips keyed by
what it shows, its width and whether it holds the cursor.

Moving the cursor is cheap and immediate; the run it lands on is announced once the keys
queued behind it are handled (`RunSelected` also merges queued duplicates), so a held Down
does not load every run it passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.color import Color as RichColor
from rich.console import Group, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.color import Color
from textual.geometry import Size
from textual.renderables.sparkline import Sparkline
from textual.strip import Strip

from tui.messages import RunChosen, RunSelected
from tui.roster import Ledger, resting
from tui.safe import line
from tui.scroll_view import CursorView, cursor_bindings
from tui.summary import LIVE, fmt_cost, fmt_duration, fmt_num, fmt_score, live_elapsed

#: Lines per card.
CARD = 3
#: A glyph per run status, so status reads without colour.
GLYPHS = {"created": "○", "starting": "…", "running": "▶", "paused": "‖", "done": "✓",
          "stopped": "■", "failed": "✗", "resting": "z"}
STYLES = {"running": "bold green", "paused": "bold yellow", "failed": "bold red",
          "done": "bold", "stopped": "dim", "starting": "cyan", "resting": "yellow"}


def status_text(run: dict[str, Any], alive: bool | None) -> Text:
    """A run's status as a glyph and a word; a live status with no engine says so."""
    status = run["status"]
    if status in LIVE and alive is False:
        return Text("? no engine", style="bold magenta")
    if resting(run):  # the library's scheduler rested it (runs.waiting says so)
        status = "resting"
    return Text(f"{GLYPHS.get(status, '·')} {line(str(status))}", style=STYLES.get(status, ""))


def ago(seconds: float) -> str:
    """How long ago, in one coarse unit: `just now`, `12m ago`, `3h ago`, `2d ago`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


@dataclass(frozen=True)
class Card:
    """What one card shows; equal cards draw the same (the cache key)."""

    title: str
    status: str
    status_style: str
    best: str
    stats: str
    spark: tuple[float, ...]
    scale: str


def card(run: dict[str, Any], alive: bool | None, spark: Sequence[float], now: float,
         ledger: Ledger, sort: str) -> Card:
    status = status_text(run, alive)
    # The last line follows the sort: the figure the runs are ordered by comes first.
    rounds, cost = f"{run['rounds']} rounds", fmt_cost(run["cost_usd"])
    if sort == "gain today":
        day = ledger.of(run["id"])
        stats = f"{fmt_num(day.gain, digits=3, sign=True)} today · {day.keeps} kept"
    elif sort == "cost":
        stats = f"{cost} · {fmt_cost(ledger.of(run['id']).cost)} today"
    elif sort == "last keep":
        at = ledger.last_keep.get(run["id"])
        stats = ("no keep yet" if at is None else f"kept {ago(max(0.0, now - at))}") + \
            f" · {rounds}"
    else:
        stats = f"{rounds} · {cost} · {fmt_duration(live_elapsed(run, now))}"
    values = list(spark)
    scale = ""
    if values:
        lo, hi = min(values), max(values)
        if run["direction"] == "minimize":
            # A minimised score is better when lower: flip it so a rising line means better.
            lo, hi = hi, lo
            values = [-v for v in values]
        scale = f"{fmt_score(lo)}→{fmt_score(hi)}"
    return Card(line(run["name"]), status.plain, str(status.style),
                f"best {fmt_score(run['best_score'])}",
                stats,
                tuple(values), scale)


class RunsView(CursorView):
    """Run cards, three lines each, with a cursor; only what is on screen is drawn."""

    BINDINGS: ClassVar[list[BindingType]] = cursor_bindings(
        Binding("enter", "choose", "Open", show=False), "First run", "Last run")
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "runs--cursor", "runs--cursor-blurred", "runs--spark-max", "runs--spark-min"}
    DEFAULT_CSS = """
    RunsView { background: transparent; }
    RunsView > .runs--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
    }
    RunsView > .runs--cursor-blurred {
        background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground;
    }
    RunsView > .runs--spark-max { color: $primary; }
    RunsView > .runs--spark-min { color: $primary 30%; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs: dict[int, dict[str, Any]] = {}
        self.order: list[int] = []
        self._pos: dict[int, int] = {}
        #: The run under the cursor (None: no runs shown).
        self.selected: int | None = None
        self.alive: dict[int, bool] = {}
        self.ledger = Ledger()
        self.sort = "added"
        self.now = 0.0
        self.spark_of: Callable[[int], Sequence[float]] = lambda _run_id: ()
        self._cards: dict[int, Card] = {}
        self._announced: int | None = None
        self._announcing = False
        #: Cards rendered so far (tests and the benchmark: only what is on screen is drawn).
        self.drawn = 0

    # ------------------------------------------------------------ data

    @property
    def index(self) -> int | None:
        return self._pos.get(self.selected) if self.selected is not None else None

    def set_runs(self, runs: dict[int, dict[str, Any]], order: list[int], now: float,
                 alive: dict[int, bool], ledger: Ledger, sort: str,
                 spark_of: Callable[[int], Sequence[float]]) -> None:
        """New data: the cards on screen are drawn again if what they show changed."""
        self.runs, self.now, self.alive, self.ledger, self.spark_of = (runs, now, alive,
                                                                      ledger, spark_of)
        resort = order != self.order or sort != self.sort
        self.sort = sort
        if resort:
            self.order = order
            self._pos = {run_id: i for i, run_id in enumerate(order)}
            self._resize()
        if self.selected not in self._pos:
            self.selected = order[0] if order else None
            self._scroll_to_cursor()
            self._announce()
        # Only the cards on screen are kept: any other is read afresh when it scrolls in.
        old, self._cards = self._cards, {run_id: self._card(run_id) for run_id in
                                         self._visible()}
        if resort or any(old.get(run_id) != shown for run_id, shown in self._cards.items()):
            self.refresh()

    def card_of(self, run_id: int) -> Card:
        """What the card of a run shows (drawn so when it is on screen)."""
        return self._cards.get(run_id) or self._card(run_id)

    def _card(self, run_id: int) -> Card:
        return card(self.runs[run_id], self.alive.get(run_id), self.spark_of(run_id),
                    self.now, self.ledger, self.sort)

    def _visible(self) -> list[int]:
        top = round(self.scroll_y) // CARD
        count = max(1, self.size.height) // CARD + 2
        return self.order[top:top + count]

    def select(self, run_id: int) -> None:
        """Put the cursor on a run (if shown), without announcing it (the app chose it)."""
        if run_id in self._pos:
            self._move(run_id)
            self._announced = run_id

    def _move(self, run_id: int | None) -> None:
        if run_id == self.selected:
            return
        self.selected = run_id
        self.refresh()
        self._scroll_to_cursor()

    def _announce(self) -> None:
        """Tell the app which run the cursor is on, once the keys queued now are handled."""
        if not self._announcing:
            self._announcing = True
            self.call_later(self._send)

    def _send(self) -> None:
        self._announcing = False
        if self.selected is not None and self.selected != self._announced:
            self._announced = self.selected
            self.post_message(RunSelected(self.selected))

    # ------------------------------------------------------------ rendering

    def _resize(self) -> None:
        # Padded so that the furthest scroll is whole cards too (see _scroll_to_cursor).
        height = CARD * len(self.order)
        size = Size(self.size.width, height + (self.size.height - height) % CARD
                    if height > self.size.height else height)
        if size != self.virtual_size:
            self.virtual_size = size

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index, row = divmod(round(self.scroll_y) + y, CARD)
        if index >= len(self.order):
            return Strip.blank(width, self.rich_style)
        run_id = self.order[index]
        shown = self._cards.get(run_id)
        if shown is None:
            shown = self._cards[run_id] = self._card(run_id)
        cursor = run_id == self.selected
        strips = self._cached((shown, width, cursor, cursor and self.has_focus),
                              lambda: self._render_card(shown, width, cursor))
        return strips[row]

    def _render_card(self, shown: Card, width: int, cursor: bool) -> list[Strip]:
        self.drawn += 1
        over = Style()
        if cursor:
            over = self.get_component_rich_style(
                "runs--cursor" if self.has_focus else "runs--cursor-blurred")
        title = Text(shown.title, style="bold", overflow="ellipsis", no_wrap=True)
        title.append("  ")
        title.append(shown.status, style=shown.status_style)
        middle = Table.grid(expand=True)
        middle.add_column(width=13, no_wrap=True)
        middle.add_column(ratio=1)
        middle.add_column(no_wrap=True, justify="right")
        spark: RenderableType = Text("")
        if shown.spark:
            high, low = self._spark_colors(over if cursor else None)
            spark = Sparkline(list(shown.spark), width=None, summary_function=max,
                              min_color=low, max_color=high)
        middle.add_row(Text(shown.best), spark,
                       Text(" " + shown.scale, style="dim") if shown.spark else "")
        group = Group(title, middle, Text(shown.stats, style="dim", no_wrap=True,
                                          overflow="ellipsis"))
        padded = width - 2  # one column of padding each side
        console = self.app.console
        options = console.options.update(width=max(1, padded), height=CARD)
        lines = console.render_lines(group, options, pad=True)
        strips = []
        for segments in lines[:CARD]:
            if over:
                segments = list(Segment.apply_style(segments, over))
            strip = Strip([Segment(" "), *segments, Segment(" ")])
            strips.append(strip.crop_extend(0, width, over or None)
                          .apply_style(over or self.rich_style))
        return strips

    def _spark_colors(self, cursor: Style | None) -> tuple[RichColor, RichColor]:
        """The bars' colours: the theme's primary, or the cursor's own foreground on the
        highlighted card (readable on its background, whatever the theme)."""
        if cursor is not None and cursor.color is not None and cursor.bgcolor is not None:
            fg = Color.from_rich_color(cursor.color)
            bg = Color.from_rich_color(cursor.bgcolor)
            return cursor.color, bg.blend(fg, 0.45).rich_color
        high = self.get_component_rich_style("runs--spark-max").color or RichColor.default()
        low = self.get_component_rich_style("runs--spark-min").color or RichColor.default()
        return high, low

    # ------------------------------------------------------------ keys and mouse

    def _scroll_to_cursor(self) -> None:
        index = self.index
        if index is None:
            return
        # Whole cards only: the top of the pane is always a card's first line.
        cards = max(1, self.size.height // CARD)
        top, first = round(self.scroll_y), index * CARD
        if top % CARD:  # a resize or the mouse wheel left a card cut at the top
            top -= top % CARD
            self.scroll_to(y=top, animate=False)
        if first < top:
            self.scroll_to(y=first, animate=False)
        elif first + CARD > top + cards * CARD:
            self.scroll_to(y=(index - cards + 1) * CARD, animate=False)

    def move_to(self, index: int) -> None:
        if not self.order:
            return
        self._move(self.order[max(0, min(index, len(self.order) - 1))])
        self._announce()

    # The hooks of CursorView: its keys and the mouse move the cursor a card at a time.

    def _cursor_index(self) -> int:
        return self.index or 0

    def _count(self) -> int:
        return len(self.order)

    def _page_size(self) -> int:
        return self.size.height // CARD

    def _index_at(self, y: int) -> int | None:
        return (round(self.scroll_y) + y) // CARD

    def _go(self, index: int, follow: bool) -> None:
        self.move_to(index)

    def _resized(self) -> None:
        self._scroll_to_cursor()

    def action_choose(self) -> None:
        if self.selected is not None:
            self._send()
            self.post_message(RunChosen(self.selected))
