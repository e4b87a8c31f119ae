"""The checklist breakdown: each item's pass rate for the best version and for the latest
candidate, as bars side by side, so a trade-off (one item up, another down) shows at a glance.
A run that holds inputs out also shows, beside the best's (optimized) rates, the same items on
the held-out inputs at the latest checkpoint: an item high on one and low on the other is the
one being gamed. For a metric run: the metric for both, and the noise band around the best."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.guard import Guarded
from tui.safe import line
from tui.summary import fmt_delta, fmt_score


@dataclass
class Side:
    """One version shown in the breakdown: an experiment and its numbers."""

    exp_id: int | None
    #: item → (passed, total), in checklist order.
    items: dict[str, tuple[int, int]]
    metrics: dict[str, float]
    score: float | None


def side(row: dict[str, Any] | None, summary: list[dict[str, Any]]) -> Side:
    if row is None:
        return Side(None, {}, {}, None)
    metrics = json.loads(row["metrics_json"]) if row.get("metrics_json") else {}
    # Item and metric names come from a spec and an evaluation's output: shown, never obeyed.
    items = {line(r["item"]): (r["passed"] or 0, r["total"] or 0) for r in summary}
    metrics = {line(k): v for k, v in metrics.items()} if isinstance(metrics, dict) else {}
    return Side(row["id"], items, metrics, row["score"])


def bar(rate: float, width: int) -> str:
    full = round(rate * width)
    return "█" * full + "░" * (width - full)


def checklist_text(best: Side, latest: Side, width: int, held: Held | None = None) -> Text:
    names = list(dict.fromkeys([*best.items, *latest.items, *(held.side.items if held else ())]))
    text = Text()
    if not names:
        return Text("No item results yet.", style="dim")
    columns = 3 if held else 2
    name_w = min(max(len(n) for n in names), max(8, width // 4))
    bar_w = max(3, (width - name_w - columns * 5 - 6) // columns)
    head = f"{'':<{name_w}}  {_label('best', best.exp_id):<{bar_w + 5}} "
    if held:
        word = _label("held out", held.version)
        word = word if len(word) <= bar_w + 5 else f"held #{held.version}"
        head += f"{word[:bar_w + 5]:<{bar_w + 5}} "
    text.append(head + _label("latest", latest.exp_id) + "\n", style="bold")
    for name in names:
        text.append(f"{name[:name_w]:<{name_w}}  ")
        rb, rc = _of(best, name), _of(latest, name)
        _rate(text, rb, bar_w, "green")
        text.append(" ")
        if held:
            _rate(text, _of(held.side, name), bar_w, "yellow")
            text.append(" ")
        _rate(text, rc, bar_w, "cyan")
        if rb is not None and rc is not None and rc != rb:
            text.append(" ▲" if rc > rb else " ▼", style="bold green" if rc > rb else "bold red")
        text.append("\n")
    text.append(f"score: best {fmt_score(best.score)} · latest {fmt_score(latest.score)}",
                style="dim")
    if held:
        text.append(f" · held out {fmt_score(held.score)}", style="dim")
        if held.version != best.exp_id:
            text.append(f" (of #{held.version}: the best is not scored on it yet)", style="dim")
    return text


@dataclass
class Held:
    """The latest held-out checkpoint: the version it scored, its items and its score."""

    version: int
    side: Side
    score: float


def _of(side: Side, name: str) -> float | None:
    r = side.items.get(name)
    return r[0] / r[1] if r and r[1] else None


def _label(word: str, exp_id: int | None) -> str:
    return f"{word} #{exp_id}" if exp_id is not None else f"{word} -"


def _rate(text: Text, rate: float | None, width: int, style: str) -> None:
    if rate is None:
        text.append(" " * width + "   - ", style="dim")
        return
    text.append(bar(rate, width), style=style)
    text.append(f"{rate * 100:4.0f}%")


def metric_text(metric: str, direction: str, best: Side, latest: Side,
                band: float | None, band_label: str, width: int,
                baseline: float | None = None, held: Held | None = None) -> Text:
    text = Text()
    arrow = "lower is better" if direction == "minimize" else "higher is better"
    metric = line(metric)
    text.append(metric, style="bold")
    text.append(f"  ({arrow})\n", style="dim")
    vb = best.metrics.get(metric, best.score)
    vc = latest.metrics.get(metric, latest.score)
    if baseline is not None:
        text.append(f"{'baseline':<15} {fmt_score(baseline):>10}\n", style="dim")
    text.append(f"best   {_label('', best.exp_id)[1:]:<8} {fmt_score(vb):>10}", style="green")
    if baseline and vb is not None:
        text.append(f"  {(vb - baseline) / abs(baseline):+.1%} vs baseline", style="dim")
    text.append("\n")
    text.append(f"latest {_label('', latest.exp_id)[1:]:<8} {fmt_score(vc):>10}", style="cyan")
    if latest.exp_id is not None and latest.exp_id == best.exp_id:
        text.append("  (the best)", style="dim")
    elif vb is not None and vc is not None:
        delta, better = fmt_delta(vc - vb, direction)
        text.append(f"  {delta}", style="bold green" if better else "bold red" if better is False
                    else "")
        if band is not None:
            inside = abs(vc - vb) <= band
            text.append("  within noise" if inside else "  beyond noise", style="dim")
    text.append("\n")
    if held is not None:
        text.append(f"held out #{held.version:<7} {fmt_score(held.score):>10}", style="yellow")
        if held.version != best.exp_id:
            text.append("  (an earlier best)", style="dim")
        text.append("\n")
    if band is not None:
        text.append(f"noise  {band_label}\n", style="yellow")
        if vb is not None:
            text.append_text(_scale(vb, vc, band, max(10, width - 2)))
            text.append("\n")
    else:
        text.append("noise  not measured yet\n", style="dim")
    others = {k: v for k, v in {**best.metrics, **latest.metrics}.items() if k != metric}
    for key in others:
        text.append(f"{key}: best {fmt_score(best.metrics.get(key))} · latest "
                    f"{fmt_score(latest.metrics.get(key))}\n", style="dim")
    return text


def _scale(best: float, latest: float | None, band: float, width: int) -> Text:
    """A number line: the noise band (░) around the best (◆), and the latest (●)."""
    lo = min(best - band, latest if latest is not None else best) - band * 0.5
    hi = max(best + band, latest if latest is not None else best) + band * 0.5
    span = (hi - lo) or 1.0

    def pos(v: float) -> int:
        return max(0, min(width - 1, round((v - lo) / span * (width - 1))))

    cells = ["─"] * width
    for i in range(pos(best - band), pos(best + band) + 1):
        cells[i] = "░"
    text = Text()
    marks = {pos(best): ("◆", "bold green")}
    if latest is not None:
        marks[pos(latest)] = ("●", "bold cyan")
    for i, ch in enumerate(cells):
        mark = marks.get(i)
        text.append(mark[0] if mark else ch, style=mark[1] if mark else "yellow")
    return text


class Body(Guarded, Static):
    """The breakdown's text."""


class Breakdown(VerticalScroll):
    """Scrolls when a checklist (or a test suite) has more items than fit."""

    DEFAULT_CSS = """
    Breakdown { height: 1fr; width: 1fr; }
    Breakdown Static { width: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._args: tuple[str, tuple[Any, ...]] = ("none", ())
        self._shown = ""
        self._spans: list[Any] = []
        self._lines = 0
        self._baseline: float | None = None
        self._held: Held | None = None

    def compose(self) -> ComposeResult:
        yield Body(Text("Select a run.", style="dim"))

    def show_checklist(self, best: Side, latest: Side, held: Held | None = None) -> None:
        self._args = ("checklist", (best, latest))
        self._held = held
        self._draw()

    def show_metric(self, metric: str, direction: str, best: Side, latest: Side,
                    band: float | None, band_label: str, baseline: float | None = None,
                    held: Held | None = None) -> None:
        self._args = ("metric", (metric, direction, best, latest, band, band_label))
        self._baseline = baseline
        self._held = held
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        kind, args = self._args
        width = max(20, self.size.width - 2)
        if kind == "checklist":
            body = checklist_text(*args, width=width, held=self._held)
        elif kind == "metric":
            body = metric_text(*args, width=width, baseline=self._baseline, held=self._held)
        else:
            return
        lines = body.plain.count("\n") + 1
        if body.plain != self._shown or body.spans != self._spans:
            self._shown, self._spans = body.plain, body.spans
            self.query_one(Body).update(body, layout=lines != self._lines)
            self._lines = lines
