"""One experiment opened: its diff, its evidence per item and sample, its log tail, and the
rest of its record. `v` and `i` steer it from here too; in the Evidence tab `y` / `n` label
the selected answer with the person's own yes/no (engine/labelling.py)."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from engine.store import Store
from tui.changelog_pane import VERDICT_STYLES
from tui.footer import LeanFooter
from tui.heading import Heading
from tui.safe import line, shown
from tui.summary import fmt_cost, fmt_delta, fmt_duration, fmt_score

TABS = ("diff", "evidence", "log", "record")


class ExperimentScreen(Screen[None]):
    """Full screen; Escape goes back to the dashboard."""

    DEFAULT_CSS = """
    ExperimentScreen #exp-about { height: auto; padding: 0 1; background: $boost; }
    ExperimentScreen TabbedContent { height: 1fr; }
    ExperimentScreen TabPane { padding: 0; }
    ExperimentScreen VerticalScroll { height: 1fr; }
    ExperimentScreen Static.body { padding: 0 1; width: 1fr; }
    ExperimentScreen DataTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("v", "steer('veto')", "Veto"),
        Binding("i", "steer('pin')", "Pin"),
        Binding("1", "tab('diff')", "Diff", show=False),
        Binding("2", "tab('evidence')", "Evidence", show=False),
        Binding("3", "tab('log')", "Log", show=False),
        Binding("4", "tab('record')", "Record", show=False),
        Binding("y", "label(True)", "Label yes"),
        Binding("n", "label(False)", "Label no"),
    ]

    def __init__(self, store: Store, exp_id: int, direction: str, run_name: str = "") -> None:
        super().__init__()
        self.store = store
        self.exp_id = exp_id
        self.direction = direction
        self.run_name = run_name
        self.row: dict[str, Any] = store.experiment(exp_id) or {}
        #: The evidence table's answers, row by row (what `y` / `n` label).
        self.answers: list[dict[str, Any]] = []
        self._outputs: dict[tuple[str, int], str] | None = None

    def compose(self) -> ComposeResult:
        row = self.row
        yield Heading(self._head(), id="exp-head")
        yield Static(self._about(), id="exp-about")
        with TabbedContent(initial="diff"):
            with TabPane("Diff [1]", id="diff"), VerticalScroll():
                diff = shown(row.get("diff"))  # a model's edit: shown, never obeyed
                yield Static(Syntax(diff, "diff", theme="ansi_dark", word_wrap=True)
                             if diff else Text("No diff (a baseline, or no change).", style="dim"),
                             classes="body")
            with TabPane("Evidence [2]", id="evidence"):
                yield DataTable(id="evidence-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Log [3]", id="log"), VerticalScroll():
                yield Static(self._log(), classes="body")
            with TabPane("Record [4]", id="record"), VerticalScroll():
                yield Static(self._record(), classes="body")
        yield LeanFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("item", "sample", "input", "pass", "evidence", "label")
        labels = {(r["item"], r["input"], r["sample"]): r["label"] for r in
                  self.store.labels(self.row["run_id"]) if r["experiment_id"] == self.exp_id} \
            if self.row else {}
        for r in self.store.item_results(self.exp_id):
            mark = {1: Text("✓ yes", style="green"), 0: Text("✗ no", style="red")}.get(
                r["passed"], Text("? unclear", style="yellow"))
            label = labels.get((r["item"], r["input"] or "", r["sample"]))
            table.add_row(Text(line(r["item"])), r["sample"], _one_line(r["input"], 24), mark,
                          _one_line(r["evidence"], 80), _label_mark(label))
            self.answers.append(r)
        if not table.row_count:
            table.add_row(Text("no item results", style="dim"), "", "", "", "", "")

    def _head(self) -> Text:
        """One line (cut at the width): the experiment, its verdict and score first."""
        row = self.row
        if not row:
            return Text(f"#{self.exp_id}: no such experiment", style="bold red")
        delta, better = fmt_delta(row["delta"], self.direction)
        text = Text()
        if self.run_name:
            text.append(f"{line(self.run_name)} ", style="bold")
        text.append(f"#{row['id']} ", style="bold")
        text.append(f"round {row['round']} · ")
        text.append(row["verdict"], style=VERDICT_STYLES.get(row["verdict"], ""))
        text.append(f" · score {fmt_score(row['score'])}")
        if delta:
            text.append(f" ({delta})", style="green" if better else "red" if better is False else "")
        text.append(f" · {line(row['worker']) or 'no worker'} · {fmt_duration(row['duration'])}"
                    f" · {fmt_cost(row['cost_usd'])}")
        return text

    def _about(self) -> Text:
        """What was tried and why, wrapped under the head line."""
        row = self.row
        if not row:
            return Text("")
        text = Text()
        text.append(line(row["description"]), style="bold")
        if row.get("rationale"):  # the mutator's why, beside the verdict's why
            idea = line(row["rationale"])
            idea = idea if len(idea) <= 200 else idea[:199] + "…"
            text.append(f"\nrationale: {idea}", style="italic")
        if row["reason"]:
            text.append(f"\nwhy: {line(row['reason'])}", style="italic")
        return text

    def _log(self) -> Text:
        row = self.row
        text = Text()
        if row.get("error"):
            text.append("error\n", style="bold red")
            text.append(shown(row["error"]) + "\n\n")
        text.append("log tail\n", style="bold")
        text.append((shown(row.get("log_tail")) or "(empty)") + "\n\n")
        events = self.store.events(experiment_id=self.exp_id, limit=200)
        if events:
            text.append("events\n", style="bold")
            for e in events:
                stamp = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
                style = "red" if e["level"] == "error" else "yellow" if e["level"] == "warning" else ""
                text.append(f"{stamp} {line(e['source']):<10} {shown(e['line'], True)}\n",
                            style=style)
        return text

    def _record(self) -> Text:
        row = self.row
        text = Text()
        for key in ("kind", "parent", "tier", "wave", "git_commit"):
            if row.get(key) is not None:
                text.append(f"{key}: ", style="bold")
                text.append(f"{line(row[key])}\n")
        for key in ("started", "finished"):
            if row.get(key):
                text.append(f"{key}: ", style="bold")
                text.append(time.strftime("%Y-%m-%d %H:%M:%S\n", time.localtime(row[key])))
        text.append("tokens: ", style="bold")
        text.append(f"in {row.get('tokens_in', 0)} · out {row.get('tokens_out', 0)} · cache write "
                    f"{row.get('tokens_cache_write', 0)} · cache read "
                    f"{row.get('tokens_cache_read', 0)}\n")
        if row.get("metrics_json"):
            text.append("metrics:\n", style="bold")
            for k, v in json.loads(row["metrics_json"]).items():
                text.append(f"  {line(k)} = {line(v)}\n")
        if row.get("rationale"):
            text.append("rationale:\n", style="bold")
            text.append(shown(row["rationale"]) + "\n")
        return text

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "label":
            evidence = self.query_one(TabbedContent).active == "evidence"
            return True if evidence and self.answers else None if self.answers else False
        return True

    def on_tabbed_content_tab_activated(self) -> None:
        self.refresh_bindings()

    def action_label(self, yes: bool) -> None:
        """The person's own yes/no to the selected answer's question (replaces an earlier)."""
        from engine.labelling import Sample, event_input, outputs_of, write_label
        from tui.board import written_soon

        table = self.query_one(DataTable)
        if not self.answers or not 0 <= table.cursor_row < len(self.answers):
            return
        r = self.answers[table.cursor_row]
        if self._outputs is None:
            self._outputs = outputs_of(self.store, self.exp_id)
        inp = r["input"] or ""
        sample = Sample(self.exp_id, r["item"], inp, r["sample"],
                        None if r["passed"] is None else bool(r["passed"]), r["evidence"] or "",
                        "", self._outputs.get((event_input(inp), r["sample"])))
        written_soon(self.app, lambda: write_label(self.store, sample, yes))
        table.update_cell_at((table.cursor_row, 5), _label_mark(int(yes)))
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)  # on to the next answer

    def action_steer(self, verb: str) -> None:
        app: Any = self.app
        app.steer_experiment(verb, self.exp_id)


def _label_mark(label: int | None) -> Text:
    """A person's label in the evidence table."""
    if label is None:
        return Text("-", style="dim")
    return Text("yes", style="bold green") if label else Text("no", style="bold red")


def _one_line(value: str | None, width: int) -> Text:
    flat = line(value)
    return Text(flat[:width] + ("…" if len(flat) > width else ""))
