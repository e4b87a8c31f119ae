"""What the app shows, read from the store: every run, the experiments in flight, the steering
commands, and the selected run's changelog and chart points.

Free of Textual, so it can be tested and benchmarked on its own. It polls with cheap indexed
queries only (new or lately finished experiments in light columns, the handful of run rows,
the newest commands); nothing here rereads a whole run on an update.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.model import RUNNING
from engine.store import Store
from tui.roster import Ledger

#: Rows finished this long before the newest finish seen are read again: several engine
#: processes can commit out of timestamp order, and a row must never be missed.
FINISH_MARGIN_S = 2.0
#: Scores kept per run for its sparkline.
SPARK_POINTS = 60
#: Newest experiments kept for the selected run (status line rules, breakdown, first page).
RECENT = 400
#: Newest commands read on every poll.
COMMANDS_POLLED = 30


@dataclass
class Changes:
    """What one poll found."""

    #: Runs that are new or whose row changed.
    runs: set[int] = field(default_factory=set)
    #: New or updated experiments (light rows), any run, oldest first.
    experiments: list[dict[str, Any]] = field(default_factory=list)
    #: New command rows.
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: Commands that became applied since the last poll.
    applied: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs or self.experiments or self.commands or self.applied)


@dataclass
class RunDetail:
    """The selected run, loaded when it is selected and kept current by each poll."""

    run_id: int
    #: id → [round, verdict, score], in id order: every experiment, for the chart.
    points: dict[int, list[Any]]
    #: The newest light rows, newest first.
    recent: list[dict[str, Any]]
    #: Its newest commands, newest first.
    commands: list[dict[str, Any]]
    #: Bumped when a finished point changes (a veto or pin rewrote it): charts start over.
    rewrites: int = 0

    def latest_candidate(self) -> dict[str, Any] | None:
        """The newest finished candidate with a score: the "latest" in the breakdown."""
        return next((r for r in self.recent if r["kind"] != "baseline"
                     and r["verdict"] != RUNNING and r["score"] is not None), None)


class Board:
    """The UI's model of the store. One per app, used from the app's thread only."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        #: What "today" is read against (the app's clock: a screenshot of a recorded store
        #: shows that day's figures, not today's zeros).
        self.clock = clock
        self.runs: dict[int, dict[str, Any]] = {}
        self.specs: dict[int, dict[str, Any]] = {}
        #: Scores per run for its sparkline, read when its card is first drawn (`spark`): the
        #: first screen of a library of 200 runs must not read 200 runs' scores.
        self.sparks: dict[int, deque[float]] = {}
        #: Every run's figures for today (keeps, cost, gain) and its last keep.
        self.ledger = Ledger()
        #: Experiments in flight, every run: id → light row.
        self.running: dict[int, dict[str, Any]] = {}
        self.commands: dict[int, dict[str, Any]] = {}
        #: Commands this app wrote, and those of them not yet seen applied.
        self.mine: set[int] = set()
        self.pending: set[int] = set()
        #: The person's writes (commands, labels) waiting for the store's write lock, oldest
        #: first: each tries once and says whether it was written.
        self.unsent: list[Callable[[], bool]] = []
        self.detail: RunDetail | None = None
        self.last_id = 0
        self.watermark = 0.0
        self._seen: dict[int, tuple[str, float | None]] = {}

    # ------------------------------------------------------------ loading

    def load(self) -> None:
        """Read the starting picture: runs, sparklines, what is in flight, recent commands."""
        now = time.time()
        self.last_id = self.store.max_experiment_id()
        self.watermark = now
        self._poll_runs(Changes())
        self.ledger.load(self.store, self.runs, self.clock())
        for row in self.store.running_experiments():
            self.running[row["id"]] = row
            self._seen[row["id"]] = (row["verdict"], row["finished"])
        # Rows finished just before now are re-read by the first poll: they are not news.
        for row in self.store.light_changes(self.last_id, now - FINISH_MARGIN_S):
            self._seen[row["id"]] = (row["verdict"], row["finished"])
        for row in self.store.commands(None, limit=COMMANDS_POLLED):
            self.commands[row["id"]] = row

    def spark(self, run_id: int) -> deque[float]:
        """A run's newest scores, oldest first (read on first use, then kept by the polls)."""
        spark = self.sparks.get(run_id)
        if spark is None:
            spark = self.sparks[run_id] = deque(self.store.recent_scores(run_id, SPARK_POINTS),
                                                maxlen=SPARK_POINTS)
        return spark

    def select(self, run_id: int, first_page: int = RECENT) -> RunDetail:
        """Load one run's chart points, newest rows and commands."""
        points = {r[0]: [r[1], r[2], r[3]] for r in self.store.score_points(run_id)}
        recent = self.store.changelog_page(run_id, limit=first_page)
        commands = self.store.commands(run_id, limit=50)
        self.detail = RunDetail(run_id, points, recent, commands)
        return self.detail

    # ------------------------------------------------------------ polling

    def poll(self) -> Changes:
        """One cheap look at the store; applies what changed to the board and returns it."""
        changes = Changes()
        self._poll_runs(changes)
        self._poll_experiments(changes)
        self._poll_commands(changes)
        today = self.clock()
        if self.ledger.due(today):  # a new day, or a verdict rewritten in place (a veto)
            self.ledger.load(self.store, self.runs, today)
        return changes

    def _poll_runs(self, changes: Changes) -> None:
        for row in self.store.runs():
            old = self.runs.get(row["id"])
            if old != row:
                changes.runs.add(row["id"])
                self.runs[row["id"]] = row
                if old is None or old["spec_json"] != row["spec_json"]:
                    self.specs[row["id"]] = _parse(row["spec_json"])

    def _poll_experiments(self, changes: Changes) -> None:
        rows = self.store.light_changes(self.last_id, self.watermark - FINISH_MARGIN_S)
        detail = self.detail
        for row in rows:
            exp_id = row["id"]
            key = (row["verdict"], row["finished"])
            before = self._seen.get(exp_id)
            if before == key:
                continue
            self._seen[exp_id] = key
            self.last_id = max(self.last_id, exp_id)
            if row["finished"]:
                self.watermark = max(self.watermark, row["finished"])
            if row["verdict"] == RUNNING:
                self.running[exp_id] = row
            else:
                self.running.pop(exp_id, None)
                first_finish = before is None or before[1] is None
                if first_finish and row["score"] is not None and row["run_id"] in self.sparks:
                    self.sparks[row["run_id"]].append(row["score"])
                if first_finish:
                    run = self.runs.get(row["run_id"]) or {}
                    self.ledger.add(row, run.get("direction", "maximize"))
            changes.experiments.append(row)
            if detail is not None and row["run_id"] == detail.run_id:
                self._apply_to_detail(detail, row)
        floor = self.watermark - 2 * FINISH_MARGIN_S
        if len(self._seen) > 2000:
            self._seen = {k: v for k, v in self._seen.items() if v[1] is None or v[1] > floor}

    def _apply_to_detail(self, detail: RunDetail, row: dict[str, Any]) -> None:
        old = detail.points.get(row["id"])
        if old is not None and old[1] != RUNNING:
            detail.rewrites += 1
        detail.points[row["id"]] = [row["round"], row["verdict"], row["score"]]
        for i, old in enumerate(detail.recent[:50]):
            if old["id"] == row["id"]:
                detail.recent[i] = row
                return
        if not detail.recent or row["id"] > detail.recent[0]["id"]:
            detail.recent.insert(0, row)
            del detail.recent[RECENT:]

    def _poll_commands(self, changes: Changes) -> None:
        rows = {r["id"]: r for r in self.store.commands(None, limit=COMMANDS_POLLED)}
        for cid in self.pending - rows.keys():  # one of ours fell out of the newest few
            row = self.store.command(cid)
            if row:
                rows[cid] = row
        for cid in sorted(rows):
            row = rows[cid]
            old = self.commands.get(cid)
            if old is None:
                changes.commands.append(row)
            if row["applied"] is not None and (old is None or old["applied"] is None):
                changes.applied.append(row)
                self.pending.discard(cid)
            self.commands[cid] = row
            detail = self.detail
            if detail is not None and row["run_id"] in (detail.run_id, None):
                for i, c in enumerate(detail.commands):
                    if c["id"] == cid:
                        detail.commands[i] = row
                        break
                else:
                    detail.commands.insert(0, row)
        if len(self.commands) > 4 * COMMANDS_POLLED:
            keep = sorted(self.commands)[-2 * COMMANDS_POLLED:]
            self.commands = {k: self.commands[k] for k in keep}

    def rewritten_verdicts(self, run_id: int, first_id: int) -> list[tuple[int, str, str | None]]:
        """Verdicts changed in place since they were read (a veto reverting a chain)."""
        detail = self.detail
        out = []
        for exp_id, verdict, reason in self.store.verdicts_from(run_id, first_id):
            if detail is not None and detail.run_id == run_id:
                point = detail.points.get(exp_id)
                if point is not None and point[1] != verdict:
                    point[1] = verdict
                    detail.rewrites += 1
                    out.append((exp_id, verdict, reason))
                    for r in detail.recent:
                        if r["id"] == exp_id:
                            r["verdict"], r["reason"] = verdict, reason
        return out

    # ------------------------------------------------------------ steering

    def send(self, run_id: int | None, verb: str, target: int | None = None,
             argument: str | None = None) -> int | None:
        """Write a steering command (its id); the engine applies it and records the result.
        Never waits for the store's lock: an engine on this app's event loop may hold it
        and could not let go (engine/records.py); what cannot be written now waits in
        `unsent` (None) for send_unsent()."""
        def write() -> bool:
            cid = self.store.add_command(run_id, verb, target=target, argument=argument,
                                         wait=False)
            if cid is None:
                return False
            self.pending.add(cid)
            self.mine.add(cid)
            return True

        self.unsent.append(write)
        return max(self.mine) if self.send_unsent() else None

    def write(self, write: Callable[[], object]) -> bool:
        """Another write of the person's (a label), on the same terms as `send`: written now
        (True), or waiting in `unsent`, behind any earlier one, for send_unsent()."""
        self.unsent.append(lambda: self.store.try_write(write))
        return self.send_unsent()

    def send_unsent(self) -> bool:
        """Write what is waiting, oldest first; True when nothing is left."""
        while self.unsent:
            if not self.unsent[0]():
                return False
            self.unsent.pop(0)
        return True


def written_soon(app: object, write: Callable[[], object]) -> None:
    """A screen's write of the person's (a label): through the app's queue in the main app,
    whose event loop may carry an engine (SteeringActions.write_soon), else at once
    (`autoresearch-tui label` hosts no engine)."""
    soon = getattr(app, "write_soon", None)
    if soon is None:
        write()
    else:
        soon(write)


def _parse(spec_json: str | None) -> dict[str, Any]:
    try:
        data = json.loads(spec_json or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
