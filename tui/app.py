"""The dashboard app: runs, score chart, checklist breakdown, changelog, workers and a status
line, live from the store; steering keys write command rows (see `tui/steering.py`).

`make_app(db, specs, attach)` builds it for the CLI and for the tests alike. With specs, the
engine is hosted in-process inside one `@work(exclusive=True, group="engine")` worker; with
none, the app watches and steers the store (a headless engine, or nothing yet: `n` starts
runs here). Either way the app reads state only from the store, through its own connection.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from engine.gcfreeze import freeze_imports
from engine.store import Store
from engine.tree import search_width
from tui import config
from tui.board import Board
from tui.breakdown_pane import Breakdown
from tui.changelog_pane import PAGE, WINDOW, Changelog
from tui.changelog_view import ChangelogView
from tui.chart_pane import ScoreChart
from tui.drawing import Drawing
from tui.footer import LeanFooter
from tui.guard import guarded
from tui.messages import (
    ExperimentChosen,
    FilterChanged,
    OlderRowsWanted,
    RunChosen,
    RunSelected,
    StoreChanged,
)
from tui.runs_pane import RunsPane
from tui.safe import markup
from tui.status_line import StatusLine
from tui.steering import BINDINGS, SteeringActions
from tui.summary import LIVE, ChartData
from tui.workers_pane import WorkersPane

if TYPE_CHECKING:  # the engine proper loads only when a run is hosted here (start-up time)
    from engine.spec import Spec
    from tui.hosting import EngineHost

#: How often the store is polled (the in-process engine also wakes the poll early).
POLL_S = 0.4
#: The chart is redrawn at most this often (plotext is the costliest thing on screen).
CHART_S = 0.5
#: Below this size the panes collapse to one at a time.
NARROW_W, NARROW_H = 110, 30
PANES = ("runs", "changelog", "chart", "checklist", "workers")
TITLES = {"runs": "Runs", "changelog": "Changelog", "chart": "Score", "checklist": "Checklist",
          "workers": "Workers"}


class Dashboard(Screen[None]):
    """The main screen: every pane; collapses to one pane at a time when small."""

    #: The changelog has the focus from the start. Textual's default focuses the first focusable
    #: widget (the runs list); moving the focus off it restyles both panes' whole subtrees.
    AUTO_FOCUS = "#changelog-table"

    def compose(self) -> ComposeResult:
        yield Static(id="pane-bar")
        with Horizontal(id="body"):
            with Vertical(id="side"):
                yield RunsPane(id="runs", classes="pane")
                yield WorkersPane(id="workers", classes="pane")
            with Vertical(id="main"):
                with Horizontal(id="top"):
                    yield ScoreChart(id="chart", classes="pane")
                    yield Breakdown(id="checklist", classes="pane")
                yield Changelog(id="changelog", classes="pane")
        yield StatusLine(id="status")
        yield LeanFooter(compact=True, show_command_palette=False)

    async def on_mount(self) -> None:
        app: Any = self.app
        await app.start()

    def on_resize(self, event: events.Resize) -> None:
        app: Any = self.app
        # The screen's new size, not the app's: that one can still be the old size here,
        # and a missed switch left the narrow layout on a wide terminal (found in tmux).
        app._apply_layout(event.size)


class AutoresearchApp(SteeringActions, Drawing, App[int]):
    """Watch and steer every run in one store."""

    CSS_PATH = "app.tcss"
    TITLE = "autoresearch"
    BINDINGS = BINDINGS

    def __init__(self, db: Path, specs: list[Spec], attach: bool) -> None:
        super().__init__()
        self.db = db
        self.specs = specs
        self.attach = attach
        store = Store(db)
        store.only_writes_that_never_wait()  # this loop may carry an engine (see try_write)
        self.board = Board(store, clock=lambda: self.clock())
        self.dash = Dashboard()
        self.engine: EngineHost | None = None
        self.selected_run: int | None = None
        self.active_pane = "changelog"
        self.narrow: bool | None = None
        self._pane_bar: tuple[bool, str] | None = None
        self.alive: dict[int, bool] = {}
        self.last_command: Text | None = None
        self._want_run = specs[0].name if specs else None
        self._chart_dirty = False
        self._chart_drawn = 0.0
        self._breakdown_key: tuple[Any, ...] = ()
        self._binding_state: tuple[Any, ...] = ()
        self._chart = ChartData()
        self._engine_alive: Callable[[Path, str], bool] | None = None
        self._chart_key: tuple[Any, ...] = ()
        self._last_poll = 0.0
        self._early: Timer | None = None
        self._ticks = 0
        #: The wall clock for what is shown (elapsed, time left); tests fix it for snapshots.
        self.clock: Callable[[], float] = time.time
        # The theme last chosen from the palette (tui/config.py), if it still exists.
        theme = config.load().get("theme")
        if isinstance(theme, str) and theme in self.available_themes:
            self.theme = theme

    # ------------------------------------------------------------ layout

    def get_default_screen(self) -> Screen[Any]:
        return self.dash

    async def start(self) -> None:
        """Once the dashboard is up: read the store, start polling, start hosted runs."""
        for pane, title in TITLES.items():
            self.dash.query_one(f"#{pane}").border_title = title
        self.theme_changed_signal.subscribe(self, lambda theme: config.save(theme=theme.name))
        self.board.load()
        self._apply_layout()
        await self._show_runs()
        self._show_status()
        self.set_interval(POLL_S, self.poll)
        self.set_interval(1.0, self._tick)
        # After the first screen is up (its imports would compete with it for the GIL).
        self.set_timer(1.0, lambda: self.run_worker(self._preload, thread=True, group="preload"))
        if self.specs:
            engine = self.ensure_engine()
            for spec in self.specs:
                engine.start(spec)
        self.dash.query_one("#changelog-table").focus()

    def _apply_layout(self, size: Any = None) -> None:
        if not self.dash.is_mounted:
            return
        size = size or self.size
        narrow = size.width < NARROW_W or size.height < NARROW_H
        self.narrow = narrow
        self.dash.set_class(narrow, "-narrow")
        active = self.active_pane
        shown = {f"#{pane}": not narrow or pane == active for pane in PANES}
        shown["#side"] = not narrow or active in ("runs", "workers")
        shown["#main"] = not narrow or active in ("chart", "checklist", "changelog")
        shown["#top"] = not narrow or active in ("chart", "checklist")
        for selector, display in shown.items():
            widget = self.dash.query_one(selector)
            # Set only on a change: the first set of `display` (even to what the CSS already
            # says) refreshes the widget and all its children, a second full render at start.
            if widget.display != display:
                widget.display = display
        if (narrow, active) != self._pane_bar:
            self._pane_bar = (narrow, active)
            bar = Text()
            for i, pane in enumerate(PANES, 1):
                bar.append(f" {i} {TITLES[pane]} ",
                           style="reverse bold" if pane == active else "")
            self.dash.query_one("#pane-bar", Static).update(bar)

    def action_pane(self, pane: str) -> None:
        """Show one pane (narrow terminals) or move the focus to it (wide ones)."""
        self.active_pane = pane
        self._apply_layout()
        target = {"runs": "#runs-list", "changelog": "#changelog-table",
                  "checklist": "#checklist"}.get(pane)
        if target:  # focused at once: the next key typed goes there (see Changelog.open_filter)
            self.dash.set_focus(self.dash.query_one(target))
        elif self.narrow:
            self.dash.set_focus(None)

    def action_label(self) -> None:
        """The labelling screen for the selected run (tui/label_screen.py)."""
        from tui.label_screen import LabelScreen

        if self.selected_run is not None:
            self.push_screen(LabelScreen(self.board.store, self.board.runs[self.selected_run]
                                         ["name"]))

    # ------------------------------------------------------------ engine

    def ensure_engine(self) -> EngineHost:
        """The in-process engine, created (and its one worker started) on first use."""
        if self.engine is None:
            from tui.hosting import EngineHost

            self.engine = EngineHost(self.db, self.wake, self._engine_error)
            self.run_engine()
        return self.engine

    @work(exclusive=True, group="engine")
    async def run_engine(self) -> None:
        assert self.engine is not None
        await self.engine.serve()

    def wake(self) -> None:
        """Host listener: something changed in the store; poll soon."""
        self.post_message(StoreChanged())

    def _engine_error(self, message: str) -> None:
        self.notify(markup(message), title="engine", severity="error", timeout=8)

    @on(StoreChanged)
    async def _store_changed(self) -> None:
        wait = self._last_poll + 0.1 - time.monotonic()
        if wait <= 0:
            await self.poll()
        elif self._early is None:
            self._early = self.set_timer(wait, self._early_poll)

    async def _early_poll(self) -> None:
        self._early = None
        await self.poll()

    def on_key(self, event: events.Key) -> None:
        """A key no widget or binding took (see `Changelog.take_typed`)."""
        if self.screen is self.dash and (self.dash.query_one(Changelog).take_typed(event)
                                         or self.dash.query_one(RunsPane).take_typed(event)):
            event.stop()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "engine" and event.state == WorkerState.ERROR:
            self._engine_error(f"the engine stopped: {event.worker.error!r}")

    # ------------------------------------------------------------ polling

    def _ui_up(self) -> bool:
        """False while the app is closing: timers may still fire as the widgets go away."""
        return self.is_running and not self._exit and self.dash.is_attached

    async def _while_up(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run a timer's step unless the app is closing (widgets may be gone mid-step)."""
        if not self._ui_up():
            return
        try:
            await step()
        except NoMatches:
            if self._ui_up():
                raise

    async def poll(self) -> None:
        """Read what changed in the store and update only the widgets it touches."""
        await self._while_up(self._poll)

    async def _poll(self) -> None:
        self._last_poll = time.monotonic()
        changes = self.board.poll()
        run_id = self.selected_run
        if changes.runs:
            await self._show_runs()
        if run_id is not None:
            mine = [r for r in changes.experiments if r["run_id"] == run_id]
            commands = list({c["id"]: c for c in changes.commands + changes.applied
                             if c["run_id"] in (run_id, None)}.values())
            if mine or commands:
                self._update_changelog(mine, commands)
            if mine:
                self._chart_dirty = True
            if any(c["run_id"] in (run_id, None) and c["verb"] in ("veto", "pin")
                   for c in changes.applied):
                self._refresh_verdicts()
            if mine or changes.runs:
                self._show_breakdown()
        for command in changes.applied:
            self._command_applied(command)
        if changes.experiments or changes.runs:
            self._show_workers()
            self._show_status()
            self._sync_bindings()
        if self._chart_dirty and time.monotonic() - self._chart_drawn >= CHART_S:
            self._draw_chart()

    async def _tick(self) -> None:
        """Once a second: clocks (elapsed, time left, how long a worker is busy)."""
        await self._while_up(self._tick_once)

    async def _tick_once(self) -> None:
        self._ticks += 1
        if self._ticks % 2 == 1:
            self._check_engines()
        if self._ticks % 5 == 0:
            self._refresh_verdicts()
        await self._show_runs()
        self._show_progress()
        self._show_workers()
        self._show_status()
        self._sync_bindings()
        if self._chart_dirty:
            self._draw_chart()

    @guarded("#changelog-table")
    def _show_progress(self) -> None:
        """Each experiment in flight of the selected run: elapsed time and last output line."""
        now = self.clock()
        changelog = self.dash.query_one(Changelog)
        for row in self.board.running.values():
            if row["run_id"] == self.selected_run and row["started"]:
                events = self.board.store.events(experiment_id=row["id"], limit=1)
                changelog.progress(row["id"], now - row["started"],
                                   events[-1]["line"] if events else None)

    def _preload(self) -> None:
        """Import the engine's host module off the UI thread: it pulls in the whole engine
        (pydantic included), a few tenths of a second the first screen should not wait for.
        sqlite_utils too: the store imports it on its first write (see `Store.db`), which
        here is the first steering key; 0.2 s that key should not wait for."""
        from engine.sqlitelib import sqlite_utils

        sqlite_utils()

        from engine.host import engine_alive

        self._engine_alive = engine_alive

    def _check_engines(self) -> None:
        engine_alive = self._engine_alive
        if engine_alive is None:
            return  # still loading (see _preload): checked on a later tick
        for run_id, run in self.board.runs.items():
            if run["status"] not in LIVE:
                self.alive.pop(run_id, None)
                continue
            here = self.engine is not None and self.engine.hosts(run_id)
            self.alive[run_id] = here or engine_alive(self.db, run["name"])

    @guarded("#changelog-table")
    def _refresh_verdicts(self) -> None:
        """Catch verdicts rewritten in place (a veto reverting a chain): no timestamp moves."""
        detail = self.board.detail
        changelog = self.dash.query_one(Changelog)
        if detail is None or not detail.points:
            return
        first = changelog.oldest_id or next(iter(detail.points))
        rewritten = self.board.rewritten_verdicts(detail.run_id, first)
        if rewritten:
            rows = [r for r in detail.recent if r["id"] in {e for e, _, _ in rewritten}]
            changelog.upsert(rows, [])
            self._chart_dirty = True

    # ------------------------------------------------------------ selection

    @on(RunSelected)
    def _run_selected(self, message: RunSelected) -> None:
        self.select_run(message.run_id)

    def select_run(self, run_id: int) -> None:
        if run_id == self.selected_run:
            return
        self.selected_run = run_id
        self.board.select(run_id)
        self._breakdown_key = ()
        self._load_changelog()
        self._draw_chart()
        self._show_breakdown()
        self._show_workers()
        self._show_status()
        self._sync_bindings()

    def _sync_bindings(self) -> None:
        """Refresh the footer only when what enables a key changed (a footer refresh rebuilds
        its widgets: far too costly for every poll)."""
        if not self._ui_up():
            return
        run = self.board.runs.get(self.selected_run) if self.selected_run else None
        row = self.selected()
        state = (self.selected_run, run and run["status"],
                 row and (row["verdict"] in ("running", "baseline"), row["score"] is None),
                 self.in_flight_veto(), type(self.screen))
        if state != self._binding_state:
            self._binding_state = state
            self.refresh_bindings()

    @on(ChangelogView.Moved)
    def _cursor_moved(self) -> None:
        self._sync_bindings()

    @on(RunChosen)
    def _run_chosen(self) -> None:
        self.action_pane("changelog")

    @guarded("#changelog-table")
    def _update_changelog(self, rows: list[dict[str, Any]],
                          commands: list[dict[str, Any]]) -> None:
        changelog = self.dash.query_one(Changelog)
        changelog.upsert(rows, commands)
        if changelog.table.row_count > WINDOW and changelog.table.cursor_row <= 0:
            self._load_changelog()

    @guarded("#changelog-table")
    def _load_changelog(self) -> None:
        detail = self.board.detail
        if detail is None:
            return
        changelog = self.dash.query_one(Changelog)
        rows = self.board.store.changelog_page(detail.run_id, limit=PAGE, text=changelog.filter)
        run = self.board.runs[detail.run_id]
        changelog.load(rows, detail.commands, run["direction"], len(rows) == PAGE,
                       tree=search_width(self.board.specs.get(detail.run_id, {})) > 1)

    @on(FilterChanged)
    def _reload_changelog(self) -> None:
        self._load_changelog()

    @on(OlderRowsWanted)
    def _older(self, message: OlderRowsWanted) -> None:
        if self.selected_run is None:
            return
        changelog = self.dash.query_one(Changelog)
        rows = self.board.store.changelog_page(self.selected_run, before_id=message.before_id,
                                               limit=PAGE, text=changelog.filter)
        changelog.append_older(rows, len(rows) == PAGE)

    @on(ExperimentChosen)
    def _open(self, message: ExperimentChosen) -> None:
        self.open_experiment(message.exp_id)


def make_app(db: Path, specs: list[Spec], attach: bool) -> AutoresearchApp:
    """The app for the CLI and the tests: `attach` with no specs watches and steers the store;
    with specs the engine runs in-process and starts them."""
    # Textual sizes the screen with shutil.get_terminal_size(), which believes COLUMNS and
    # LINES when they are exported: the app then never followed a resize (found in tmux,
    # where a parent had exported them). The terminal itself knows its size.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
    freeze_imports()
    return AutoresearchApp(Path(db), list(specs), attach=attach and not specs)


