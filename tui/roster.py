"""The runs pane's model at library size (hundreds of runs): what each run did today, the
order the pane shows them in, the runs filter, and the library's overview line.

Free of Textual (and of rich), so the rules are tested on their own. Today's figures are
read once with one grouped query (the `finished` index serves it) and then kept current
from the experiments each poll already reads; nothing here reads one run at a time.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

from engine.daystats import day_stats, last_keeps
from engine.model import ADVANCING, BASELINE

#: The orders the sort key cycles through, in turn; the first is the store's own order.
SORTS = ("added", "gain today", "cost", "last keep", "status")
#: Statuses by how much they want a look, for the status order (unknown ones go between).
STATUS_RANK = {"running": 0, "starting": 1, "paused": 2, "resting": 3, "created": 4,
               "failed": 5, "stopped": 6, "done": 7}
#: Today's figures are read again this often, to catch verdicts rewritten in place (a veto).
REREAD_S = 60.0


def midnight(now: float) -> float:
    """The start of the local day `now` falls in."""
    day = datetime.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
    return day.timestamp()


def resting(run: dict[str, Any]) -> bool:
    """A run the library's scheduler rested (it plateaued and waits to be revisited): its
    `waiting` reason says so (engine/scheduler.py: "resting: plateau since 14:02"); read
    defensively, a status of its own or a pause whose reason says so count too."""
    status = run.get("status")
    reason = (run.get("stop_reason") or "").lower()
    waiting = str(run.get("waiting") or "").lower()
    return (status == "resting" or (status == "paused" and reason.startswith("rest"))
            or (status in ("running", "starting", "paused") and waiting.startswith("resting")))


@dataclass
class Day:
    """One run's figures for today."""

    keeps: int = 0
    cost: float = 0.0
    #: The sum of the keeps' improvements, in the run's own direction (positive is better).
    gain: float = 0.0


class Ledger:
    """Every run's figures for today, and when each last kept something."""

    def __init__(self) -> None:
        self.since = 0.0
        self.read_at = 0.0
        self.day: dict[int, Day] = {}
        self.last_keep: dict[int, float] = {}

    def load(self, store: Any, runs: dict[int, dict[str, Any]], now: float) -> None:
        """Read today's figures: two queries, whatever the number of runs."""
        self.since, self.read_at = midnight(now), now
        self.day = {}
        for run_id, keeps, cost, delta, _newest in day_stats(store, self.since):
            direction = (runs.get(run_id) or {}).get("direction", "maximize")
            gain = (delta or 0.0) if direction != "minimize" else -(delta or 0.0)
            self.day[run_id] = Day(int(keeps or 0), float(cost or 0.0), gain)
        self.last_keep = last_keeps(store)

    def due(self, now: float) -> bool:
        """True when the day turned or the figures are old enough to read again."""
        return midnight(now) != self.since or now - self.read_at >= REREAD_S

    def add(self, row: dict[str, Any], direction: str) -> None:
        """One experiment's first finish, as a poll found it."""
        finished = row.get("finished")
        if finished is None:
            return
        keep = row["verdict"] in ADVANCING and row.get("kind") != BASELINE
        if keep:
            self.last_keep[row["run_id"]] = max(finished, self.last_keep.get(row["run_id"], 0))
        if finished < self.since:
            return
        day = self.day.setdefault(row["run_id"], Day())
        day.cost += row.get("cost_usd") or 0.0
        if keep:
            day.keeps += 1
            delta = row.get("delta") or 0.0
            day.gain += delta if direction != "minimize" else -delta

    def of(self, run_id: int) -> Day:
        return self.day.get(run_id) or Day()


def matches(run: dict[str, Any], text: str) -> bool:
    """The runs filter: every word appears in the run's name, status or why it stopped."""
    hay = " ".join(str(run.get(k) or "")
                   for k in ("name", "status", "stop_reason", "waiting")).lower()
    if resting(run):
        hay += " resting"
    return all(word in hay for word in text.lower().split())


def sort_key(sort: str, run: dict[str, Any], ledger: Ledger) -> tuple[Any, ...]:
    """Smallest first; ties keep the store's order (the run id comes last)."""
    run_id = run["id"]
    if sort == "gain today":
        return (-ledger.of(run_id).gain, -ledger.of(run_id).keeps, run_id)
    if sort == "cost":
        return (-(run.get("cost_usd") or 0.0), run_id)
    if sort == "last keep":
        return (-ledger.last_keep.get(run_id, -math.inf), run_id)
    if sort == "status":
        status = "resting" if resting(run) else run.get("status")
        return (STATUS_RANK.get(status, 4), run_id)
    return (run_id,)


def order(runs: dict[int, dict[str, Any]], sort: str, text: str, ledger: Ledger) -> list[int]:
    """The run ids the pane shows, in the order it shows them."""
    shown = [run for run in runs.values() if not text or matches(run, text)]
    if sort != "added":
        shown.sort(key=lambda run: sort_key(sort, run, ledger))
    return [run["id"] for run in shown]


def budget(runs: dict[int, dict[str, Any]], specs: dict[int, dict[str, Any]],
           ledger: Ledger) -> tuple[float, float, str] | None:
    """(spent, cap, "today" or "in all") of the libraries' shared budgets, if any spec has a
    `library:` budget (a daily cap first; read defensively, any other shape is no budget)."""
    caps: dict[str, tuple[str, float]] = {}
    members: dict[str, list[int]] = {}
    for run_id, run in runs.items():
        library = (specs.get(run_id) or {}).get("library")
        if not isinstance(library, dict):
            continue
        for key, per in (("daily_cost_usd", "today"), ("max_cost_usd", "in all")):
            cap = library.get(key)
            if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0:
                group = str(run.get("spec_path") or run_id)
                caps.setdefault(group, (per, float(cap)))
                members.setdefault(group, []).append(run_id)
                break
    if not caps:
        return None
    kinds = {per for per, _ in caps.values()}
    per = "today" if kinds == {"today"} else "in all" if kinds == {"in all"} else "mixed"
    if per == "mixed":  # one daily cap and one overall: the daily figure is the one to watch
        caps = {g: c for g, c in caps.items() if c[0] == "today"}
        per = "today"
    spent = 0.0
    for group in caps:
        for run_id in members[group]:
            spent += ledger.of(run_id).cost if per == "today" else \
                (runs[run_id].get("cost_usd") or 0.0)
    return spent, sum(cap for _, cap in caps.values()), per


@dataclass
class Overview:
    """The library in one line: how many runs do what, keeps and cost today, the budget."""

    running: int = 0
    resting: int = 0
    paused: int = 0
    done: int = 0
    failed: int = 0
    keeps: int = 0
    cost: float = 0.0
    budget: tuple[float, float, str] | None = None


def overview(runs: dict[int, dict[str, Any]], specs: dict[int, dict[str, Any]],
             ledger: Ledger) -> Overview:
    out = Overview(budget=budget(runs, specs, ledger))
    for run_id, run in runs.items():
        status = run.get("status")
        if resting(run):
            out.resting += 1
        elif status in ("running", "starting"):
            out.running += 1
        elif status == "paused":
            out.paused += 1
        elif status == "failed":
            out.failed += 1
        elif status in ("done", "stopped"):
            out.done += 1
        day = ledger.day.get(run_id)
        if day is not None:
            out.keeps += day.keeps
            out.cost += day.cost
    return out
