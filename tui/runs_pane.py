"""The runs pane: the library's overview line, a one-line runs filter (`/` with the pane
focused, as the changelog's), and the run cards (`tui/runs_view.py`), in an order the sort
key cycles (`o`: added, gain today, cost, last keep, status; shown in the pane's title).
Moving the cursor selects the run the other panes show."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from tui.filter_box import open_box, take_typed
from tui.roster import SORTS, Ledger, Overview, order, overview
from tui.runs_view import RunsView, status_text
from tui.summary import fmt_cost

__all__ = ["RunsPane", "RunsView", "status_text"]


def overview_text(view: Overview, width: int = 32) -> Text:
    """The library in a few short lines, wrapped between its parts (never inside one): what
    the runs do; keeps and cost today (against the shared budget, when there is one)."""
    parts = [Text(f"{glyph} {count} {word}", style=style if count else "dim")
             for count, glyph, word, style in
             [(view.running, "▶", "running", "green"), (view.resting, "z", "resting", "yellow"),
              (view.paused, "‖", "paused", "yellow"), (view.done, "✓", "done", ""),
              (view.failed, "✗", "failed", "red")]
             if count or word in ("running", "done")]
    parts.append(Text(f"{view.keeps} kept today", style="bold" if view.keeps else "dim"))
    if view.budget is None:
        parts.append(Text(f"{fmt_cost(view.cost)} today"))
    else:
        spent, cap, per = view.budget
        parts.append(Text(f"{fmt_cost(spent)} of {fmt_cost(cap)} {per}",
                          style="bold red" if spent >= cap else ""))
    text, used = Text(), 0
    for part in parts:
        if used and used + 3 + part.cell_len > width:
            text.append("\n")
            used = 0
        elif used:
            text.append(" · ", style="dim")
            used += 3
        text.append_text(part)
        used += part.cell_len
    return text


class RunsPane(Vertical):
    """Every run in the store; the one under the cursor is the selected run."""

    BINDINGS = [Binding("escape", "close_filter", "Clear filter", show=False)]
    DEFAULT_CSS = """
    RunsPane { height: 1fr; }
    RunsPane #runs-overview { height: auto; max-height: 4; padding: 0 1; }
    RunsPane #runs-filter { display: none; height: 1; border: none; padding: 0 1;
                            background: $boost; }
    RunsPane #runs-filter.-shown { display: block; }
    RunsPane #runs-filter:focus { border: none; }
    RunsPane .empty { color: $text-muted; padding: 1 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sort = SORTS[0]
        self.filter = ""
        #: True once the first picture of the runs is up (the benchmark waits for it).
        self.shown = False
        self._data: tuple[Any, ...] | None = None
        self._overview: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="runs-overview")
        yield Input(placeholder="filter runs: name, status (esc clears)", id="runs-filter")
        yield RunsView(id="runs-list")
        yield Label("No runs in this store yet.\nPress n to start one.", classes="empty")

    @property
    def view(self) -> RunsView:
        return self.query_one(RunsView)

    # ------------------------------------------------------------ data (attributes down)

    def show(self, runs: dict[int, dict[str, Any]], specs: dict[int, dict[str, Any]],
             ledger: Ledger, now: float, alive: dict[int, bool],
             spark_of: Callable[[int], Sequence[float]]) -> None:
        self._data = (runs, specs, ledger, now, alive, spark_of)
        self._draw()

    def _draw(self) -> None:
        if self._data is None:
            return
        runs, specs, ledger, now, alive, spark_of = self._data
        shown = order(runs, self.sort, self.filter, ledger)
        self.view.set_runs(runs, shown, now, alive, ledger, self.sort, spark_of)
        self.query_one(".empty").display = not runs
        width = self.query_one("#runs-overview").content_region.width or 32
        text = overview_text(overview(runs, specs, ledger), width)
        count = f"{len(shown)}/{len(runs)}" if self.filter else f"{len(runs)}"
        title = f"Runs {count}" + (f" · by {self.sort}" if self.sort != SORTS[0] else "")
        if self.screen.has_class("-narrow"):  # no border, so no title: it leads the overview
            text = Text(title + "\n", style="bold") + text
        if text != self._overview:
            # A layout pass (of the whole screen) only when its number of lines changes.
            lines = text.plain.count("\n")
            layout = self._overview is None or lines != self._overview.plain.count("\n")
            self._overview = text
            self.query_one("#runs-overview", Static).update(text, layout=layout)
        if self.border_title != title:
            self.border_title = title
        self.shown = True

    def on_resize(self, event: events.Resize) -> None:
        self._draw()  # the overview wraps to the new width

    # ------------------------------------------------------------ the app's calls

    def select(self, run_id: int) -> None:
        self.view.select(run_id)

    def step(self, by: int) -> None:
        view = self.view
        if view.order:
            view.move_to(((view.index or 0) + by) % len(view.order))

    def cycle_sort(self) -> str:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._draw()
        return self.sort

    @property
    def index(self) -> int | None:
        return self.view.index

    @property
    def count(self) -> int:
        return len(self.view.order)

    def run_at(self, index: int) -> int:
        return self.view.order[index]

    @property
    def drawn(self) -> int:
        return self.view.drawn

    # ------------------------------------------------------------ filter

    def open_filter(self) -> None:
        open_box(self.query_one("#runs-filter", Input))

    def take_typed(self, event: events.Key) -> bool:
        """A key typed in the burst after `/` that reached the app (tui/filter_box.py)."""
        return take_typed(self.query_one("#runs-filter", Input), event)

    def action_close_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.remove_class("-shown")
        if box.value:
            box.value = ""
            self._set_filter("")
        self.screen.set_focus(self.view)

    @on(Input.Changed, "#runs-filter")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self._set_filter(event.value)  # 200 names filter in well under a millisecond

    @on(Input.Submitted, "#runs-filter")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._set_filter(event.value)
        if not event.value.strip():
            event.input.remove_class("-shown")
        self.screen.set_focus(self.view)

    def _set_filter(self, text: str) -> None:
        text = " ".join(text.split())
        if text != self.filter:
            self.filter = text
            self._draw()
