"""The score chart: every scored experiment as a point (kept and reverted told apart by marker
as well as colour), the best-so-far as a step line, and the target as a line."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from tui.summary import Series


class ScoreChart(PlotextPlot):
    """A plotext chart of one run's scores; redrawn only when its data changed."""

    DEFAULT_CSS = """
    ScoreChart { height: 1fr; width: 1fr; }
    """

    def show(self, name: str, direction: str, series: Series, target: float | None) -> None:
        plt = self.plt
        plt.clear_figure()
        arrow = "↑ better" if direction == "maximize" else "↓ better"
        if not series.count:
            plt.title(f"{name}: no scores yet")
            self.refresh()
            return
        # The legend goes in the title: plotext draws its own over the points.
        legend = ["◆ kept", "· reverted"] + (["x vetoed"] if series.vetoed[0] else []) + \
            ["⣿ best"] + (["─ target"] if target is not None else [])
        plt.title(f"{name} ({arrow}) · {'  '.join(legend)}")
        ys = series.kept[1] + series.reverted[1] + series.vetoed[1]
        # Metrics such as a load time fall by orders of magnitude: a log axis keeps them readable.
        if min(ys) > 0 and max(ys) / min(ys) > 20:
            plt.yscale("log")
        xs = series.kept[0] + series.reverted[0] + series.vetoed[0]
        lo, hi = min(xs), max(xs)
        step = max(1, round((hi - lo) / 5))
        plt.xticks(list(range(int(lo), int(hi) + 1, step)))
        if series.reverted[0]:
            plt.scatter(*series.reverted, marker="·", color="red")
        if series.vetoed[0]:
            plt.scatter(*series.vetoed, marker="x", color="yellow")
        if target is not None:
            plt.plot([lo, hi], [target, target], marker="─", color="magenta")
        if series.best[0]:
            plt.plot(*series.best, marker="braille", color="cyan")
        if series.kept[0]:
            plt.scatter(*series.kept, marker="◆", color="green")
        self.refresh()
