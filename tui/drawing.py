"""Drawing the panes from the board: what each pane shows, computed from the store's rows.
Mixed into the app (it reads `self.board`, `self.dash`, `self.alive`, `self.engine`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text

from engine.text import printable
from tui.breakdown_pane import Breakdown, side
from tui.chart_pane import ScoreChart
from tui.runs_pane import RunsPane, status_text
from tui.status_line import StatusLine
from tui.summary import LIVE, fmt_cost, live_elapsed, noise_band, stop_outlook
from tui.workers_pane import Slot, WorkersPane

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from textual.screen import Screen

    from tui.board import Board
    from tui.hosting import EngineHost
    from tui.summary import ChartData


class Drawing:
    """Updates each pane; every method touches only its own widget."""

    # Set by the app (see AutoresearchApp.__init__).
    board: Board
    dash: Screen[None]
    db: Path
    engine: EngineHost | None
    alive: dict[int, bool]
    clock: Callable[[], float]
    selected_run: int | None
    last_command: Text | None
    _want_run: str | None
    _chart: ChartData
    _chart_key: tuple[Any, ...]
    _chart_dirty: bool
    _chart_drawn: float
    _breakdown_key: tuple[Any, ...]

    def select_run(self, run_id: int) -> None:  # the app's
        raise NotImplementedError

    async def _show_runs(self) -> None:
        """The runs pane; selects the first run (or the one asked for) once runs exist."""
        now = self.clock()
        runs = self.board.runs
        elapsed = {rid: live_elapsed(run, now) for rid, run in runs.items()}
        await self.dash.query_one(RunsPane).show(runs, self.board.sparks, now, elapsed, self.alive)
        if self.selected_run is None and runs:
            wanted = next((rid for rid, r in runs.items() if r["name"] == self._want_run),
                          next(iter(runs)))
            self.dash.query_one(RunsPane).select(wanted)
            self.select_run(wanted)

    def _draw_chart(self) -> None:
        self._chart_dirty = False
        self._chart_drawn = time.monotonic()
        detail = self.board.detail
        if detail is None:
            return
        run = self.board.runs[detail.run_id]
        key = (detail.run_id, detail.rewrites, id(detail))
        if key != self._chart_key:
            self._chart_key = key
            self._chart.reset()
        self._chart.feed(detail.points)
        self.dash.query_one(ScoreChart).show(run["name"], run["direction"],
                                             self._chart.series(), run["target"])

    def _show_breakdown(self) -> None:
        detail = self.board.detail
        if detail is None:
            return
        run = self.board.runs[detail.run_id]
        latest = detail.latest_candidate()
        key = (run["best_experiment"], latest and latest["id"], run["noise_json"])
        if key == self._breakdown_key:
            return
        self._breakdown_key = key
        store = self.board.store
        best_row = store.experiment(run["best_experiment"]) if run["best_experiment"] else None
        latest_row = store.experiment(latest["id"]) if latest else None
        best = side(best_row, store.item_summary(best_row["id"]) if best_row else [])
        cand = side(latest_row, store.item_summary(latest_row["id"]) if latest_row else [])
        evaluate = self.board.specs.get(detail.run_id, {}).get("evaluate", {})
        pane = self.dash.query_one(Breakdown)
        title = {"metric": "Metric", "tests": "Tests"}.get(evaluate.get("kind"), "Checklist")
        if pane.border_title != title:
            pane.border_title = title
        if evaluate.get("kind") == "metric":
            band, label = noise_band(run["noise_json"])
            pane.show_metric(evaluate.get("metric", "score"), run["direction"], best, cand,
                             band, label, run["baseline_score"])
        else:
            pane.show_checklist(best, cand)

    def _show_workers(self) -> None:
        slots: list[Slot] = []
        board = self.board
        for run_id, run in board.runs.items():
            running = [r for r in board.running.values() if r["run_id"] == run_id]
            if self.engine is not None and self.engine.hosts(run_id):
                for name, label in self.engine.slots(run_id):
                    exp_id = int(label[1:]) if label and label[1:].isdigit() else None
                    since = board.running.get(exp_id, {}).get("started") if exp_id else None
                    slots.append(Slot(run["name"], name, exp_id, since))
                continue
            for r in running:
                slots.append(Slot(run["name"], r["worker"] or "in flight", r["id"], r["started"]))
            if run["status"] in LIVE and self.alive.get(run_id) is not False:
                total = sum(w.get("slots", 1) for w in
                            board.specs.get(run_id, {}).get("workers") or [{"slots": 1}])
                if total > len(running):
                    slots.append(Slot(run["name"], f"{total - len(running)} more slot(s)"))
        self.dash.query_one(WorkersPane).show(slots, self.clock())

    def _show_status(self) -> None:
        detail = self.board.detail
        if detail is None:
            self.dash.query_one(StatusLine).say(Text(
                f"{self.db.name}: no runs yet · n: start one · ?: keys", style="dim"))
            return
        run = self.board.runs[detail.run_id]
        outlook = stop_outlook(run, self.board.specs.get(detail.run_id, {}), detail.recent,
                               self.clock()) \
            if run["status"] in LIVE and self.alive.get(detail.run_id) is not False else []
        status = status_text(run, self.alive.get(detail.run_id))
        # A paused run says why (an API outage and when it tries again, unusable evidence).
        if run["stop_reason"] and (run["status"] not in LIVE or run["status"] == "paused"):
            status.append(f" ({printable(run['stop_reason'], one_line=True)})", style="dim")
        self.dash.query_one(StatusLine).show(run["name"], status, fmt_cost(run["cost_usd"]),
                                             outlook, self.last_command)
