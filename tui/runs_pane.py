"""The runs pane: one card per run — status, best score, a sparkline of its scores, rounds,
cost and elapsed time. Moving the highlight selects the run the other panes show."""

from __future__ import annotations

from typing import Any

from rich.color import Color
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.widgets import Label, ListItem, ListView

from tui.guard import Guarded
from tui.messages import RunSelected
from tui.safe import line
from tui.summary import LIVE, fmt_cost, fmt_duration, fmt_score

#: A glyph per run status, so status reads without colour.
GLYPHS = {"created": "○", "starting": "…", "running": "▶", "paused": "‖", "done": "✓",
          "stopped": "■", "failed": "✗"}
STYLES = {"running": "bold green", "paused": "bold yellow", "failed": "bold red",
          "done": "bold", "stopped": "dim", "starting": "cyan"}


def status_text(run: dict[str, Any], alive: bool | None) -> Text:
    """A run's status as a glyph and a word; a live status with no engine says so."""
    status = run["status"]
    if status in LIVE and alive is False:
        return Text("? no engine", style="bold magenta")
    return Text(f"{GLYPHS.get(status, '·')} {status}", style=STYLES.get(status, ""))


class RunCard(Guarded, ListItem):
    """One run, three lines high, drawn as one widget (ten runs must not cost sixty widgets to
    lay out): its name and status; its best score and a sparkline of its scores (Textual's own
    sparkline renderer); rounds, cost and elapsed time."""

    COMPONENT_CLASSES = {"runcard--spark-max", "runcard--spark-min"}
    DEFAULT_CSS = """
    RunCard { height: 3; padding: 0 1; }
    RunCard > .runcard--spark-max { color: $primary; }
    RunCard > .runcard--spark-min { color: $primary 30%; }
    /* On the highlighted card the cursor's own foreground: readable on its background,
       whatever the theme (it was dark blue on dark teal). */
    RunCard.-highlight > .runcard--spark-max { color: $block-cursor-blurred-foreground; }
    RunCard.-highlight > .runcard--spark-min { color: $block-cursor-blurred-foreground 45%; }
    ListView:focus > RunCard.-highlight > .runcard--spark-max { color: $block-cursor-foreground; }
    ListView:focus > RunCard.-highlight > .runcard--spark-min {
        color: $block-cursor-foreground 45%;
    }
    """

    def __init__(self, run_id: int) -> None:
        super().__init__(id=f"run-{run_id}")
        self.run_id = run_id
        self.title = Text()
        self.best = Text()
        self.stats = Text()
        self.spark: list[float] = []
        #: The sparkline's scale: its lowest and highest score, as shown beside it.
        self.scale = Text()
        self._shown: tuple[Any, ...] = ()

    def show(self, run: dict[str, Any], spark: list[float], elapsed: float,
             alive: bool | None) -> None:
        """Update the card; it is repainted only when what it shows changed."""
        title = Text(line(run["name"]), style="bold", overflow="ellipsis", no_wrap=True)
        title.append("  ")
        title.append_text(status_text(run, alive))
        best = f"best {fmt_score(run['best_score'])}"
        stats = (f"{run['rounds']} rounds · {fmt_cost(run['cost_usd'])} · "
                 f"{fmt_duration(elapsed)}")
        shown = (title.plain, best, stats, len(spark), spark[-1] if spark else None,
                 spark[0] if spark else None)
        if shown == self._shown:
            return
        self._shown = shown
        self.title, self.best, self.stats = title, Text(best), Text(stats, style="dim")
        # A minimised score is better when lower: flip it so a rising line always means better.
        self.spark = [-v for v in spark] if run["direction"] == "minimize" else list(spark)
        # The scale, in the scores' own units: worst to best as the line draws them.
        if spark:
            lo, hi = min(spark), max(spark)
            if run["direction"] == "minimize":
                lo, hi = hi, lo
            self.scale = Text(f"{fmt_score(lo)}→{fmt_score(hi)}", style="dim")
        self.refresh()

    def render(self) -> RenderableType:
        middle = Table.grid(expand=True)
        middle.add_column(width=13, no_wrap=True)
        middle.add_column(ratio=1)
        middle.add_column(no_wrap=True, justify="right")
        line: RenderableType = Text("")
        if self.spark:
            line = SparklineRenderable(
                self.spark, width=None, summary_function=max,
                min_color=self.get_component_rich_style("runcard--spark-min").color
                or Color.default(),
                max_color=self.get_component_rich_style("runcard--spark-max").color
                or Color.default())
        middle.add_row(self.best, line, Text(" ") + self.scale if self.spark else "")
        return Group(self.title, middle, self.stats)


class RunsPane(Vertical):
    """Every run in the store; the highlighted one is the selected run."""

    DEFAULT_CSS = """
    RunsPane { height: 1fr; }
    RunsPane ListView { height: 1fr; background: transparent; }
    RunsPane .empty { color: $text-muted; padding: 1 1; }
    """

    def compose(self) -> ComposeResult:
        yield ListView(id="runs-list")
        yield Label("No runs in this store yet.\nPress n to start one.", classes="empty")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: run id → card, registered before the card is mounted (polls can overlap a mount).
        self.cards: dict[int, RunCard] = {}

    async def show(self, runs: dict[int, dict[str, Any]], sparks: dict[int, Any], now: float,
                   elapsed: dict[int, float], alive: dict[int, bool]) -> None:
        cards = self.cards
        listing = self.query_one(ListView)
        fresh = [RunCard(run_id) for run_id in runs if run_id not in cards]
        for card in fresh:
            cards[card.run_id] = card
        if fresh:
            await listing.extend(fresh)
        self.query_one(".empty").display = not runs
        for run_id, run in runs.items():
            cards[run_id].show(run, list(sparks.get(run_id, ())), elapsed.get(run_id, 0.0),
                               alive.get(run_id))
        if listing.index is None and runs:
            listing.index = 0

    def select(self, run_id: int) -> None:
        for i, card in enumerate(self.query_one(ListView).children):
            if card.run_id == run_id:
                self.query_one(ListView).index = i

    def step(self, by: int) -> None:
        listing = self.query_one(ListView)
        count = len(listing.children)
        if count:
            listing.index = ((listing.index or 0) + by) % count

    def on_list_view_highlighted(self, event: ListView.Highlighted) -> None:
        event.stop()
        if isinstance(event.item, RunCard):
            self.post_message(RunSelected(event.item.run_id))
