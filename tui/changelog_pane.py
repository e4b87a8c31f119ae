"""The changelog: every experiment of the selected run, newest first, with the steering
commands interleaved where they happened (⚑ rows).

Updates are diffs (dolphie's way): a new experiment adds one row, a verdict that lands
updates one row, and only those lines are rendered again (see `changelog_view.py`). The
pane holds a window of recent rows and pages older ones in from SQLite as the cursor nears
the bottom; the filter reloads from SQLite with a LIKE query.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input

from tui.changelog_view import ChangelogView, Column, Row
from tui.filter_box import open_box, take_typed
from tui.messages import ExperimentChosen, FilterChanged, OlderRowsWanted
from tui.safe import line
from tui.summary import fmt_cost, fmt_delta, fmt_duration, fmt_score

#: Verdict styles: colour helps, but the word itself always says it.
VERDICT_STYLES = {"kept": "bold green", "baseline": "bold", "pinned": "bold blue",
                  "reverted": "dim", "vetoed": "yellow", "invalid": "red", "crashed": "bold red",
                  "timeout": "red", "interrupted": "magenta", "running": "cyan", "retest": "cyan"}
#: Columns; the description (width None) takes what is left. Narrow terminals drop two.
WIDE = [Column("ref", "#", 6, True), Column("round", "rnd", 4, True),
        Column("verdict", "verdict", 11), Column("score", "score", 7, True),
        Column("delta", "delta", 9, True), Column("description", "description", None),
        Column("worker", "worker", 10), Column("time", "time", 6, True),
        Column("cost", "cost", 8, True)]
COMPACT = [c for c in WIDE if c.key not in ("worker", "cost")]
#: Beam and frontier search: which version each candidate was proposed from (greedy search
#: proposes every candidate from the best, so the column would only repeat it).
PARENT = Column("parent", "from", 6, True)
#: Pane widths below this drop the worker and cost columns.
COMPACT_BELOW = 110
#: Rows kept while following the newest; beyond this the window is reloaded smaller.
WINDOW = 1000
PAGE = 200


class Changelog(Vertical):
    """The filter box and the table."""

    BINDINGS = [Binding("escape", "close_filter", "Clear filter", show=False)]
    DEFAULT_CSS = """
    Changelog { height: 1fr; }
    /* One line, no border: see app.tcss. */
    #changelog-filter { display: none; }
    #changelog-filter.-shown { display: block; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direction = "maximize"
        self.compact = False
        #: The run searches a tree (beam, frontier): the parent column is shown.
        self.parents = False
        self.filter = ""
        self.oldest_id: int | None = None
        self.more_below = False
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: verdict, words of the description, worker (esc clears)",
                    id="changelog-filter")
        yield ChangelogView(id="changelog-table")

    @property
    def table(self) -> ChangelogView:
        return self.query_one(ChangelogView)

    # ------------------------------------------------------------ filling

    def load(self, rows: list[dict[str, Any]], commands: list[dict[str, Any]], direction: str,
             full_page: bool, tree: bool = False) -> None:
        """Fill the table from scratch: on run selection, a filter change, or a layout change.
        `tree`: the run's search keeps more than one version (the parent column shows)."""
        self.direction = direction
        self.parents = tree
        table = self.table
        table.clear()
        table.set_columns(self.columns())
        self.oldest_id = None
        self.more_below = full_page
        self._add(rows, [c for c in commands if self._matches_command(c)])
        table.move_cursor(0)

    def on_resize(self, event: events.Resize) -> None:
        # Worker and cost columns only when the description still gets a readable width.
        self.set_compact(event.size.width < COMPACT_BELOW)

    def set_compact(self, compact: bool) -> None:
        if compact != self.compact:
            self.compact = compact
            self.table.set_columns(self.columns())

    def columns(self) -> list[Column]:
        columns = COMPACT if self.compact else WIDE
        return [columns[0], PARENT, *columns[1:]] if self.parents else columns

    def upsert(self, rows: list[dict[str, Any]], commands: list[dict[str, Any]]) -> None:
        """Add new rows and update changed ones; keeps the cursor on the same experiment."""
        table = self.table
        added: list[dict[str, Any]] = []
        for row in {r["id"]: r for r in rows}.values():
            key = str(row["id"])
            if key in table.rows:
                table.rows[key].extra.pop("description", None)  # see progress()
                table.update(key, self._cells(row))
            elif (self.oldest_id is None or row["id"] > self.oldest_id) and self._matches(row):
                added.append(row)
        fresh = []
        for command in {c["id"]: c for c in commands}.values():
            key = f"c{command['id']}"
            if key in table.rows:
                table.rows[key].extra["command"] = command
                table.update(key, {"description": self._command_text(command)})
            elif self._matches_command(command):
                fresh.append(command)
        self._add(added, fresh)

    def append_older(self, rows: list[dict[str, Any]], full_page: bool) -> None:
        self.more_below = full_page
        self._add([r for r in rows if str(r["id"]) not in self.table.rows], [])

    def _add(self, rows: list[dict[str, Any]], commands: list[dict[str, Any]]) -> None:
        new = []
        for row in rows:
            new.append(Row(str(row["id"]), self._cells(row), (row["started"] or 0.0, 0, row["id"])))
            if self.oldest_id is None or row["id"] < self.oldest_id:
                self.oldest_id = row["id"]
        for command in commands:
            cells = {"ref": Text("⚑", style="bold"),
                     "verdict": Text(command["verb"], style="bold magenta"),
                     "description": self._command_text(command)}
            new.append(Row(f"c{command['id']}", cells, (command["created"], 1, command["id"]),
                           extra={"command": command}))
        self.table.add(new)

    def _cells(self, row: dict[str, Any]) -> dict[str, Text]:
        verdict = row["verdict"]
        # Sign and colour say better or worse; no ▲▼ here: their East Asian width is
        # ambiguous, and terminals that draw them wide would shift every later column.
        delta, better = fmt_delta(row["delta"], self.direction)
        description = line(row["description"])  # a model's words: shown, never obeyed
        return {
            "ref": Text(f"#{row['id']}"),
            "parent": Text(f"#{row['parent']}" if row["parent"] is not None else "", style="dim"),
            "round": Text(str(row["round"])),
            "verdict": Text(verdict, style=VERDICT_STYLES.get(verdict, "")),
            "score": Text(fmt_score(row["score"])),
            "delta": Text(delta, style="green" if better else "red" if better is False else ""),
            "description": Text(description),
            "worker": Text(line(row["worker"]), style="dim"),
            "time": Text("…" if verdict == "running" else fmt_duration(row["duration"])),
            "cost": Text(fmt_cost(row["cost_usd"]) if row["cost_usd"] else ""),
        }

    def progress(self, exp_id: int, elapsed: float, last_line: str | None) -> None:
        """An experiment in flight: how long it has run and the last line its evaluation
        printed, so "running" and "hung" do not look the same (issue 12)."""
        key = str(exp_id)
        row = self.table.rows.get(key)
        if row is None or row.cells["verdict"].plain != "running":
            return
        base = row.extra.setdefault("description", row.cells["description"].copy())
        description = base.copy()
        if last_line:
            description.append("  › ", style="dim")
            description.append(line(last_line), style="dim italic")
        self.table.update(key, {"time": Text(fmt_duration(elapsed), style="cyan"),
                                "description": description})

    @staticmethod
    def _command_text(command: dict[str, Any]) -> Text:
        """What was asked (target, guidance text) and what the engine did with it."""
        parts = []
        if command["target"] is not None:
            parts.append(f"#{command['target']}")
        if command["argument"]:
            parts.append(repr(line(command["argument"])))
        text = Text(" ".join(parts) + (" " if parts else ""))
        if command["applied"] is None:
            text.append("… waiting for the engine", style="dim")
        else:
            text.append(f"→ applied: {line(command['result'])}", style="italic")
        return text

    # ------------------------------------------------------------ selection

    def selected_key(self) -> str | None:
        return self.table.selected_key()

    def selected_experiment(self) -> int | None:
        key = self.selected_key()
        return int(key) if key is not None and key.isdigit() else None

    def select_experiment(self, exp_id: int) -> None:
        if str(exp_id) in self.table.rows:
            self.table.following = False  # a row picked: the cursor stays on it
            self.table.move_cursor(self.table.row_index(str(exp_id)))

    @on(ChangelogView.Chosen)
    def _chosen(self, event: ChangelogView.Chosen) -> None:
        event.stop()
        if event.key.isdigit():
            self.post_message(ExperimentChosen(int(event.key)))
        elif (row := self.table.rows.get(event.key)) is not None and "command" in row.extra:
            from tui.command_screen import CommandScreen

            self.app.push_screen(CommandScreen(row.extra["command"]))  # a ⚑ row

    @on(ChangelogView.Moved)
    def _near_bottom(self, event: ChangelogView.Moved) -> None:
        if self.more_below and self.oldest_id and event.index >= self.table.row_count - 5:
            self.post_message(OlderRowsWanted(self.oldest_id))

    # ------------------------------------------------------------ filter

    def open_filter(self) -> None:
        open_box(self.query_one(Input))

    def take_typed(self, event: events.Key) -> bool:
        """A key typed in the burst after `/` that reached the app (tui/filter_box.py)."""
        return take_typed(self.query_one(Input), event)

    def action_close_filter(self) -> None:
        self.close_filter()

    def close_filter(self) -> None:
        box = self.query_one(Input)
        box.remove_class("-shown")
        if box.value:
            box.value = ""
            self._emit_filter()
        self.screen.set_focus(self.table)

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.15, self._emit_filter)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._emit_filter()
        self.screen.set_focus(self.table)

    def _emit_filter(self) -> None:
        text = self.query_one(Input).value.strip()
        if text != self.filter:
            self.filter = text
            self.post_message(FilterChanged(text))

    def _matches(self, row: dict[str, Any]) -> bool:
        if not self.filter:
            return True
        needle = self.filter.lower()
        return any(needle in (row.get(k) or "").lower()
                   for k in ("verdict", "description", "reason", "worker", "kind"))

    def _matches_command(self, command: dict[str, Any]) -> bool:
        if not self.filter:
            return True
        needle = self.filter.lower()
        return any(needle in (command.get(k) or "").lower() for k in ("verb", "argument", "result"))
