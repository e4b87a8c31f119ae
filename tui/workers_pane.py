"""The workers lane: what each worker slot is running now, and for how long."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from tui.guard import Guarded
from tui.safe import line
from tui.summary import fmt_duration


@dataclass
class Slot:
    """One worker slot of one run: idle, or busy with an experiment since a time."""

    run: str
    name: str
    exp_id: int | None = None
    since: float | None = None


class WorkersPane(Guarded, Static):
    """A few lines; grouped by run, busy slots first."""

    DEFAULT_CSS = """
    WorkersPane { height: auto; max-height: 12; padding: 0 1; }
    """

    _shown = ""
    _lines = 0

    def show(self, slots: list[Slot], now: float) -> None:
        text = Text()
        if not slots:
            text.append("No worker is busy.", style="dim")
        run = None
        for slot in slots:
            if slot.run != run:
                run = slot.run
                if text:
                    text.append("\n")
                text.append(line(run), style="bold")
            text.append(f"\n {line(slot.name):<12}")
            if slot.exp_id is None:
                text.append(" idle", style="dim")
            else:
                text.append(f" #{slot.exp_id}", style="cyan")
                if slot.since is not None:
                    text.append(f" {fmt_duration(now - slot.since):>6}")
        lines = text.plain.count("\n") + 1
        if text.plain != self._shown:
            self._shown = text.plain
            # A layout pass only when the number of lines changes.
            self.update(text, layout=lines != self._lines)
            self._lines = lines
