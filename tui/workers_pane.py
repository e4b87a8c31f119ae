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


#: Lines drawn at most (the pane's own height caps what is seen anyway).
MAX_LINES = 12


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
        # Runs with a busy slot first; a library of hundreds of runs shows the first few
        # lines and counts the rest (the pane is a few lines high: drawing all is waste).
        groups: dict[str, list[Slot]] = {}
        for slot in slots:
            groups.setdefault(slot.run, []).append(slot)
        ordered = sorted(groups.items(), key=lambda g: all(s.exp_id is None for s in g[1]))
        used, left = 0, len(slots)
        for shown, (run, mine) in enumerate(ordered):
            if used and used + 1 + len(mine) > MAX_LINES:
                text.append(f"\n… {left} more slot(s) in {len(ordered) - shown} runs",
                            style="dim")
                break
            if text:
                text.append("\n")
            text.append(line(run), style="bold")
            used += 1 + len(mine)
            left -= len(mine)
            for slot in mine:
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
