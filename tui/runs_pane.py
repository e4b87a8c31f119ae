"""The runs pane: one card per run — status, best score, a sparkline of its scores, rounds,
cost and elapsed time. Moving the highlight selects the run the other panes show."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Label, ListItem, ListView, Sparkline

from tui.messages import RunSelected
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


class RunCard(ListItem):
    """One run, three lines high."""

    DEFAULT_CSS = """
    RunCard { height: 3; padding: 0 1; }
    RunCard Label { height: 1; }
    RunCard .run-title, RunCard .run-stats { width: 1fr; }
    RunCard .run-best { width: 13; }
    RunCard Sparkline { width: 1fr; margin-left: 1; }
    RunCard Horizontal { height: 1; }
    """

    def __init__(self, run_id: int) -> None:
        super().__init__(id=f"run-{run_id}")
        self.run_id = run_id
        self._shown: tuple[Any, ...] = ()
        self._pending: tuple[Any, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Label(classes="run-title")
        with Horizontal():
            yield Label(classes="run-best")
            yield Sparkline([], summary_function=max)
        yield Label(classes="run-stats")

    def on_mount(self) -> None:
        self.call_after_refresh(self._show_pending)

    def _show_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.show(*pending)

    def show(self, run: dict[str, Any], spark: list[float], elapsed: float,
             alive: bool | None) -> None:
        """Update the card; widgets are touched only when what they show changed."""
        try:
            labels = [self.query_one(f".run-{k}", Label) for k in ("title", "best", "stats")]
            line = self.query_one(Sparkline)
        except NoMatches:  # not composed yet: shown once it is
            self._pending = (run, spark, elapsed, alive)
            return
        title = Text(run["name"], style="bold", overflow="ellipsis", no_wrap=True)
        title.append("  ")
        title.append_text(status_text(run, alive))
        best = Text(f"best {fmt_score(run['best_score'])}")
        stats = (f"{run['rounds']} rounds · {fmt_cost(run['cost_usd'])} · "
                 f"{fmt_duration(elapsed)}")
        shown = (title.plain, best.plain, stats, len(spark), spark[-1] if spark else None)
        if shown == self._shown:
            return
        self._shown = shown
        # Fixed sizes: no layout pass needed (a layout re-renders the whole screen).
        labels[0].update(title, layout=False)
        labels[1].update(best, layout=False)
        labels[2].update(Text(stats, style="dim"), layout=False)
        # A minimised score is better when lower: flip it so a rising line always means better.
        line.data = [-s for s in spark] if run["direction"] == "minimize" else list(spark)


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
