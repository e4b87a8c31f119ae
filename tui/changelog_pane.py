"""The changelog: every experiment of the selected run, newest first, with the steering
commands interleaved where they happened.

The table is diff-updated (dolphie's way): a new experiment is one `add_row`, a verdict that
lands is `update_cell`s on its row; nothing is cleared and rebuilt on an update. It holds a
window of recent rows and pages older ones in from SQLite as the cursor nears the bottom.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Input

from tui.messages import ChangelogStale, ExperimentChosen, FilterChanged, OlderRowsWanted
from tui.summary import fmt_cost, fmt_delta, fmt_duration, fmt_score

#: Verdict styles: colour helps, but the word itself always says it.
VERDICT_STYLES = {"kept": "bold green", "baseline": "bold", "pinned": "bold blue",
                  "reverted": "dim", "vetoed": "yellow", "invalid": "red", "crashed": "bold red",
                  "timeout": "red", "interrupted": "magenta", "running": "cyan", "retest": "cyan"}
#: Column widths are fixed (no measuring of every new row), the description takes the rest.
WIDE = [("ref", 6), ("round", 4), ("verdict", 11), ("score", 7), ("delta", 9), ("worker", 10),
        ("time", 6), ("cost", 8)]
COMPACT = [("ref", 5), ("round", 3), ("verdict", 8), ("score", 6), ("delta", 9), ("time", 5)]
LABELS = {"ref": "#", "round": "rnd", "verdict": "verdict", "score": "score", "delta": "delta",
          "worker": "worker", "time": "time", "cost": "cost"}
#: Rows kept while following the newest; beyond this the window is reloaded smaller.
WINDOW = 1000
PAGE = 200


class Ref(Text):
    """The `#` cell; carries the row's place in time so experiments and commands sort together."""

    order: tuple[float, int, int] = (0.0, 0, 0)


def ref(label: str, order: tuple[float, int, int], style: str = "") -> Ref:
    cell = Ref(label, style=style, justify="right")
    cell.order = order
    return cell


class ChangelogTable(DataTable[Any]):
    """The table; Enter (shown in the footer) opens the experiment under the cursor."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", key_display="⏎")]


class Changelog(Vertical):
    """The filter box and the table."""

    BINDINGS = [Binding("escape", "close_filter", "Clear filter", show=False)]

    DEFAULT_CSS = """
    Changelog { height: 1fr; }
    Changelog Input { display: none; height: 1; border: none; padding: 0 1; }
    Changelog Input.-shown { display: block; }
    Changelog DataTable { height: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direction = "maximize"
        self.compact = False
        self.filter = ""
        self.oldest_id: int | None = None
        self.more_below = False
        self.desc_width = 0
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: verdict, words of the description, worker (esc clears)",
                    id="changelog-filter")
        yield ChangelogTable(id="changelog-table", cursor_type="row", zebra_stripes=True)

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one(DataTable)

    # ------------------------------------------------------------ filling

    def load(self, rows: list[dict[str, Any]], commands: list[dict[str, Any]], direction: str,
             full_page: bool) -> None:
        """Fill the table from scratch: on run selection, a filter change, or a layout change."""
        self.direction = direction
        table = self.table
        table.clear(columns=True)
        widths = COMPACT if self.compact else WIDE
        fixed = sum(w for _, w in widths) + 2 * (len(widths) + 1) + 2
        self.desc_width = max(16, min(80, (self.size.width or 80) - 2 - fixed))
        for key, width in widths:
            table.add_column(LABELS[key], key=key, width=width)
            if key == "delta":
                table.add_column("description", key="description", width=self.desc_width)
        self.oldest_id = None
        self.more_below = full_page
        self._add(rows, [c for c in commands if self._matches_command(c)])
        table.move_cursor(row=0, animate=False)

    def upsert(self, rows: list[dict[str, Any]], commands: list[dict[str, Any]]) -> None:
        """Add new rows and update changed ones; keeps the cursor on the same experiment."""
        table = self.table
        added: list[dict[str, Any]] = []
        rows = list({r["id"]: r for r in rows}.values())
        commands = list({c["id"]: c for c in commands}.values())
        for row in rows:
            key = str(row["id"])
            if key in table.rows:
                cells = self._cells(row)
                for column, value in cells.items():
                    if column in table.columns and table.get_cell(key, column).plain != value.plain:
                        table.update_cell(key, column, value)
            elif self.oldest_id is None or row["id"] > self.oldest_id:
                if self._matches(row):
                    added.append(row)
        fresh_commands = []
        for command in commands:
            key = f"c{command['id']}"
            if key in table.rows:
                table.update_cell(key, "description", self._command_text(command))
            elif self._matches_command(command):
                fresh_commands.append(command)
        if added or fresh_commands:
            self._add(added, fresh_commands)

    def append_older(self, rows: list[dict[str, Any]], full_page: bool) -> None:
        self.more_below = full_page
        self._add([r for r in rows if str(r["id"]) not in self.table.rows], [])

    def _add(self, rows: list[dict[str, Any]], commands: list[dict[str, Any]]) -> None:
        table = self.table
        following = table.cursor_row <= 0
        keep = self.selected_key()
        with self.app.batch_update():
            for row in rows:
                cells = self._cells(row)
                table.add_row(*[cells.get(str(c.value)) for c in table.columns], key=str(row["id"]))
                if self.oldest_id is None or row["id"] < self.oldest_id:
                    self.oldest_id = row["id"]
            for command in commands:
                values = {"ref": ref("⚑", (command["created"], 1, command["id"]), "bold"),
                          "verdict": Text(command["verb"], style="bold magenta"),
                          "description": self._command_text(command)}
                table.add_row(*[values.get(str(c.value), "") for c in table.columns],
                              key=f"c{command['id']}")
            table.sort("ref", key=lambda cell: cell.order, reverse=True)
            if not following and keep is not None and keep in table.rows:
                table.move_cursor(row=table.get_row_index(keep), animate=False, scroll=False)
            elif following:
                table.move_cursor(row=0, animate=False)

    def _cells(self, row: dict[str, Any]) -> dict[str, Text]:
        verdict = row["verdict"]
        delta, better = fmt_delta(row["delta"], self.direction)
        if better is not None:
            delta += " ▲" if better else " ▼"
        running = verdict == "running"
        description = " ".join((row["description"] or "").split())
        return {
            "ref": ref(f"#{row['id']}", (row["started"] or 0.0, 0, row["id"])),
            "round": Text(str(row["round"]), justify="right"),
            "verdict": Text(verdict, style=VERDICT_STYLES.get(verdict, "")),
            "score": Text(fmt_score(row["score"]), justify="right"),
            "delta": Text(delta, justify="right",
                          style="green" if better else "red" if better is False else ""),
            "description": Text(description, no_wrap=True, overflow="ellipsis"),
            "worker": Text(row["worker"] or "", style="dim"),
            "time": Text("…" if running else fmt_duration(row["duration"]), justify="right"),
            "cost": Text(fmt_cost(row["cost_usd"]) if row["cost_usd"] else "", justify="right"),
        }

    @staticmethod
    def _command_text(command: dict[str, Any]) -> Text:
        """What was asked (target, guidance text) and what the engine did with it."""
        parts = []
        if command["target"] is not None:
            parts.append(f"#{command['target']}")
        if command["argument"]:
            parts.append(repr(command["argument"]))
        text = Text(" ".join(parts) + (" " if parts else ""), no_wrap=True, overflow="ellipsis")
        if command["applied"] is None:
            text.append("… waiting for the engine", style="dim")
        else:
            text.append(f"→ applied: {command['result']}", style="italic")
        return text

    def on_resize(self) -> None:
        if not self.size.width:
            return  # hidden (another pane is shown on a narrow terminal)
        widths = COMPACT if self.compact else WIDE
        fixed = sum(w for _, w in widths) + 2 * (len(widths) + 1) + 2
        wanted = max(16, min(80, self.size.width - 2 - fixed))
        if self.desc_width and wanted != self.desc_width:
            self.post_message(ChangelogStale())

    # ------------------------------------------------------------ selection

    def selected_key(self) -> str | None:
        table = self.table
        if not table.row_count or table.cursor_row < 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # the cursor sits on no row (an empty table)
            return None

    def selected_experiment(self) -> int | None:
        key = self.selected_key()
        return int(key) if key is not None and key.isdigit() else None

    def select_experiment(self, exp_id: int) -> None:
        if str(exp_id) in self.table.rows:
            self.table.move_cursor(row=self.table.get_row_index(str(exp_id)), animate=False)

    @on(DataTable.RowSelected)
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = str(event.row_key.value)
        if key.isdigit():
            self.post_message(ExperimentChosen(int(key)))

    @on(DataTable.RowHighlighted)
    def _near_bottom(self, event: DataTable.RowHighlighted) -> None:
        table = self.table
        if self.more_below and self.oldest_id and event.cursor_row >= table.row_count - 5:
            self.post_message(OlderRowsWanted(self.oldest_id))

    # ------------------------------------------------------------ filter

    def open_filter(self) -> None:
        box = self.query_one(Input)
        box.add_class("-shown")
        box.focus()

    def action_close_filter(self) -> None:
        self.close_filter()

    def close_filter(self) -> None:
        box = self.query_one(Input)
        box.remove_class("-shown")
        if box.value:
            box.value = ""
            self._emit_filter()
        self.table.focus()

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
        self.table.focus()

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
