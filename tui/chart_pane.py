"""The score chart: every scored experiment as a point (kept and reverted told apart by marker
as well as colour), the best-so-far as a step line, the target as a line, and, for a run that
holds inputs out, the best version's held-out score at each checkpoint as a second series.

A log y-axis is drawn by plotting log10 of the scores on a linear axis with ticks labelled in
the scores' own units. plotext's own `yscale("log")` transforms the stored data in place on
every build, and the widget builds on every render: a second render (a resize, a pane
switch) took the log of a log (issue 12: `math domain error`, or an empty frame). Here the
data handed to plotext never changes between renders, so any number of them draw the same.
"""

from __future__ import annotations

import math
from typing import Any

from textual_plotext import PlotextPlot

from tui.guard import Guarded
from tui.summary import Series, fmt_num

#: Scores spanning more than this factor (all positive) get a log axis.
LOG_SPAN = 20.0


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick positions (log10 of the values) and labels (the values, compact) for a log axis
    from `lo` to `hi` (both > 0): decades, with 2 and 5 between them when there are few."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1.0,) if last - first > 3 else (1.0, 2.0, 5.0)
    values = [m * 10.0 ** e for e in range(first, last + 1) for m in steps]
    shown = [v for v in values if lo <= v <= hi] or [lo, hi]
    return [math.log10(v) for v in shown], [fmt_num(v, digits=2) for v in shown]


class ScoreChart(Guarded, PlotextPlot):
    """A plotext chart of one run's scores; redrawn only when its data changed."""

    DEFAULT_CSS = """
    ScoreChart { height: 1fr; width: 1fr; }
    """

    #: Whether the y axis is a log axis now (tests read it).
    log_axis = False
    #: How many held-out checkpoints the chart draws now (tests read it).
    held_out_points = 0
    #: The legend drawn in the title (tests read it: a narrow pane cuts the title short).
    legend: tuple[str, ...] = ()

    _title: tuple[str, list[str]] | None = None

    def render(self) -> Any:
        # The title is fitted to the width at each render (a resize does not call `show`).
        if self._title is not None:
            self.plt.title(fit_title(*self._title, self.size.width))
        return super().render()

    def show(self, name: str, direction: str, series: Series, target: float | None,
             held_out: tuple[list[float], list[float]] | None = None) -> None:
        """Draw a run; `held_out` is (rounds, held-out scores) of its checkpoints."""
        plt = self.plt
        plt.clear_figure()
        self.held_out_points = 0
        arrow = "↑ better" if direction == "maximize" else "↓ better"
        self._title = None
        if not series.count:
            plt.title(f"{name}: no scores yet")
            self.refresh()
            return
        held = held_out if held_out and held_out[0] else ([], [])
        ys = series.kept[1] + series.reverted[1] + series.vetoed[1]
        lo_y, hi_y = min(ys), max(ys)
        # Metrics such as a load time fall by orders of magnitude: a log axis keeps them readable.
        self.log_axis = lo_y > 0 and hi_y / lo_y > LOG_SPAN
        if self.log_axis and target is not None and target <= 0:
            target = None  # not on a log axis
        if self.log_axis and any(v <= 0 for v in held[1]):
            held = ([], [])  # not on a log axis either
        self.held_out_points = len(held[0])
        if held[1]:
            lo_y, hi_y = min(lo_y, *held[1]), max(hi_y, *held[1])
        # The legend goes in the title: plotext draws its own over the points.
        legend = ["◆ kept", "· reverted"] + (["x vetoed"] if series.vetoed[0] else []) + \
            ["⣿ best"] + (["○ held out"] if held[0] else []) + \
            (["─ target"] if target is not None else [])
        self.legend = tuple(legend)
        self._title = (f"{name} ({arrow}{', log scale' if self.log_axis else ''})", legend)
        y = _log if self.log_axis else list
        xs = series.kept[0] + series.reverted[0] + series.vetoed[0] + held[0]
        lo, hi = min(xs), max(xs)
        step = max(1, round((hi - lo) / 5))
        plt.xticks(list(range(int(lo), int(hi) + 1, step)))
        if self.log_axis:
            plt.yticks(*log_ticks(lo_y, hi_y))
        else:
            ticks = _linear_ticks(lo_y if target is None else min(lo_y, target),
                                  hi_y if target is None else max(hi_y, target))
            plt.yticks(ticks, [fmt_num(t, digits=3) for t in ticks])
        if series.reverted[0]:
            plt.scatter(series.reverted[0], y(series.reverted[1]), marker="·", color="red")
        if series.vetoed[0]:
            plt.scatter(series.vetoed[0], y(series.vetoed[1]), marker="x", color="yellow")
        if target is not None:
            plt.plot([lo, hi], y([target, target]), marker="─", color="magenta")
        if series.best[0]:
            plt.plot(series.best[0], y(series.best[1]), marker="braille", color="cyan")
        if held[0]:
            # The held-out score of the version that was best at each checkpoint: beside the
            # best line, a fall while the best rises is the run gaming its checklist.
            plt.plot(held[0], y(held[1]), marker="○", color="orange")
        if series.kept[0]:
            plt.scatter(series.kept[0], y(series.kept[1]), marker="◆", color="green")
        self.refresh()


def fit_title(head: str, legend: list[str], width: int) -> str:
    """The title and legend in `width` columns: plotext drops a title that does not fit, and
    with it the legend. Spacing tightens first, then the head goes, then the legend's tail."""
    for text in (f"{head} · {'  '.join(legend)}", f"{head} · {' '.join(legend)}",
                 " ".join(legend)):
        if width <= 0 or len(text) <= width:
            return text
    return " ".join(legend)[:max(1, width)]


def _log(values: list[float]) -> list[float]:
    return [math.log10(v) for v in values]


def _linear_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values from lo to hi (labels short enough for 80 columns)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / (count - 1)
    unit = 10.0 ** math.floor(math.log10(raw))
    step = next(m * unit for m in (1, 2, 2.5, 5, 10) if m * unit >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9 and len(ticks) < 2 * count:
        ticks.append(round(value, 12))
        value += step
    return ticks or [lo, hi]
