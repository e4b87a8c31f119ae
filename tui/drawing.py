"""Drawing the panes from the board: what each pane shows, computed from the store's rows.
Mixed into the app (it reads `self.board`, `self.dash`, `self.alive`, `self.engine`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text

from engine.checkpoints import checkpoints
from tui.breakdown_pane import Breakdown, Held, side
from tui.chart_pane import ScoreChart
from tui.guard import guarded, guarded_async
from tui.runs_pane import RunsPane, status_text
from tui.safe import line
from tui.status_line import SPINNER, StatusLine
from tui.summary import LIVE, fmt_cost, fmt_duration, live_elapsed, noise_band, stop_outlook
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

    @guarded_async("#runs")
    async def _show_runs(self) -> None:
        """The runs pane; selects what is live (see `_run_to_open`) once runs exist."""
        now = self.clock()
        runs = self.board.runs
        elapsed = {rid: live_elapsed(run, now) for rid, run in runs.items()}
        await self.dash.query_one(RunsPane).show(runs, self.board.sparks, now, elapsed, self.alive)
        wanted = self._run_to_open(runs)
        if wanted is not None and wanted != self.selected_run:
            self.dash.query_one(RunsPane).select(wanted)
            self.select_run(wanted)

    def _run_to_open(self, runs: dict[int, dict[str, Any]]) -> int | None:
        """The run to show: one just started here (`n`, or the specs this app hosts) as soon
        as it exists — even if another is shown meanwhile; at first, the newest live run
        (attach, a second demo), else the first. The view follows what is live (issue 12)."""
        if self._want_run is not None:
            found = next((rid for rid, r in runs.items() if r["name"] == self._want_run), None)
            if found is not None:
                self._want_run = None
                return found
        if self.selected_run is None and runs:
            live = [rid for rid, r in runs.items() if r["status"] in LIVE]
            return max(live) if live else next(iter(runs))
        return None

    @guarded("#chart")
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
        held = checkpoints(self.board.store, detail.run_id)
        self.dash.query_one(ScoreChart).show(
            line(run["name"]), run["direction"], self._chart.series(), run["target"],
            ([c.round for c in held], [c.point.held_out for c in held]))

    @guarded("#checklist Body")
    def _show_breakdown(self) -> None:
        detail = self.board.detail
        if detail is None:
            return
        run = self.board.runs[detail.run_id]
        latest = detail.latest_candidate()
        store = self.board.store
        checks = checkpoints(store, detail.run_id)
        key = (run["best_experiment"], latest and latest["id"], run["noise_json"],
               checks[-1].point.exp_id if checks else None)
        if key == self._breakdown_key:
            return
        self._breakdown_key = key
        best_row = store.experiment(run["best_experiment"]) if run["best_experiment"] else None
        latest_row = store.experiment(latest["id"]) if latest else None
        best = side(best_row, store.item_summary(best_row["id"]) if best_row else [])
        cand = side(latest_row, store.item_summary(latest_row["id"]) if latest_row else [])
        held = None
        if checks:
            point = checks[-1].point
            held_row = store.experiment(point.exp_id)
            held = Held(point.version, side(held_row, store.item_summary(point.exp_id)),
                        point.held_out)
        evaluate = self.board.specs.get(detail.run_id, {}).get("evaluate", {})
        pane = self.dash.query_one(Breakdown)
        title = {"metric": "Metric", "tests": "Tests"}.get(evaluate.get("kind"), "Checklist")
        if pane.border_title != title:
            pane.border_title = title
        if evaluate.get("kind") == "metric":
            band, label = noise_band(run["noise_json"])
            pane.show_metric(evaluate.get("metric", "score"), run["direction"], best, cand,
                             band, label, run["baseline_score"], held)
        else:
            pane.show_checklist(best, cand, held)

    @guarded("#workers")
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

    @guarded("#status")
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
            status.append(f" ({line(run['stop_reason'])})", style="dim")
        self.dash.query_one(StatusLine).show(line(run["name"]), status, fmt_cost(run["cost_usd"]),
                                             outlook, self.last_command, self._busy(run))

    def _busy(self, run: dict[str, Any]) -> Text | None:
        """A spinner and what is being evaluated, for how long: alive, not hung."""
        now = self.clock()
        mine = sorted((r for r in self.board.running.values() if r["run_id"] == run["id"]),
                      key=lambda r: r["id"])
        if not mine or run["status"] not in LIVE:
            return None
        frame = SPINNER[int(now) % len(SPINNER)]
        oldest = min(r["started"] or now for r in mine)
        ids = ", ".join(f"#{r['id']}" for r in mine[:3]) + ("…" if len(mine) > 3 else "")
        return Text(f"{frame} evaluating {ids} {fmt_duration(now - oldest)}", style="cyan")
