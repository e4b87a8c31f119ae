"""Drawing is repeatable and never ends the app: every pane draws the same after any number of
renders, resizes and pane switches (issue 12: the chart's log axis took a log of a log on the
second render), and a widget whose drawing raises shows a one-line note instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from tui.app import AutoresearchApp, make_app
from tui.chart_pane import ScoreChart, log_ticks
from tui.fixtures import EPOCH, build_store, wait_until
from tui.guard import Guarded
from tui.summary import chart_series

SIZES = [(80, 24), (100, 30), (160, 48)]
PANE_KEYS = ["1", "2", "3", "4", "5"]


def screen_text(app: App) -> str:
    """What the terminal shows now, as plain text."""
    return "\n".join("".join(seg.text for seg in strip)
                     for strip in app.screen._compositor.render_strips())


def widget_text(widget: object) -> str:
    from textual.geometry import Region

    w, h = widget.size  # type: ignore[attr-defined]
    lines = widget.render_lines(Region(0, 0, w, h))  # type: ignore[attr-defined]
    return "\n".join(line.text for line in lines)


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ScoreChart()


def points(scores: list[float]) -> dict[int, list[object]]:
    """A run whose every other experiment is kept (so the best line moves too)."""
    out: dict[int, list[object]] = {1: [0, "baseline", scores[0]]}
    for i, score in enumerate(scores[1:], 2):
        out[i] = [i - 1, "kept" if i % 2 else "reverted", score]
    return out


@pytest.mark.parametrize("scores", [
    [4800.0, 3100.0, 900.0, 2200.0, 120.0, 95.0, 60.0, 75.0, 52.0],  # all > 1, spans 90×
    [5.0, 2.0, 0.4, 0.9, 0.05, 0.2, 0.06],  # crosses 1, spans 100×
], ids=["above-one", "crossing-one"])
async def test_a_log_axis_chart_draws_the_same_on_every_render_and_size(
        scores: list[float]) -> None:
    app = ChartApp()
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one(ScoreChart)
        chart.show("load", "minimize", chart_series(points(scores)), None)
        await pilot.pause()
        assert chart.log_axis
        first = widget_text(chart)
        assert "◆" in first and "·" in first
        for width, height in [(160, 48), (100, 30), (80, 24), (80, 24), (160, 48), (80, 24)]:
            await pilot.resize_terminal(width, height)
            await pilot.pause()
            assert chart.draw_error is None
            text = widget_text(chart)
            assert "could not draw" not in text and "◆" in text
        assert widget_text(chart) == first  # back at 80×24: the very same picture


def test_log_ticks_are_labelled_in_the_scores_own_units() -> None:
    positions, labels = log_ticks(52.0, 4800.0)
    assert labels == ["100", "200", "500", "1k", "2k"]
    assert positions[0] == pytest.approx(2.0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "render.db"
    build_store(path, runs=2, experiments=240).close()
    return path


def fixed_app(db: Path) -> AutoresearchApp:
    app = make_app(db, [], attach=True)
    app.clock = lambda: EPOCH + 300.0
    return app


async def test_every_pane_draws_the_same_after_resizes_and_switches(db: Path) -> None:
    """On the metric run (its load time spans well over 20×: a log axis), every pane at every
    size, then every size again in another order: the same screen each time, never a note."""
    app = fixed_app(db)
    async with app.run_test(size=SIZES[0]) as pilot:
        await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: app.board.runs[app.selected_run]["name"]
                         == "sqlite-load-2", 5, "the metric run")
        await pilot.pause(0.6)  # the chart is redrawn at most twice a second
        assert app.dash.query_one(ScoreChart).log_axis
        seen: dict[tuple[int, int, str], str] = {}
        for round_ in range(2):
            for size in SIZES if round_ == 0 else SIZES[::-1]:
                await pilot.resize_terminal(*size)
                await pilot.pause()
                for key in PANE_KEYS:
                    await pilot.press(key)
                    await pilot.pause()
                    text = screen_text(app)
                    assert "could not draw" not in text, (size, key, text)
                    before = seen.setdefault((*size, key), text)
                    assert text == before, (size, key)
        assert app.is_running
        assert all(getattr(w, "draw_error", None) is None for w in app.dash.query("*"))


class Broken(Guarded, Static):
    """A widget whose drawing raises, as plotext did."""

    def render(self) -> str:
        raise ValueError("math domain error")


class BrokenApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("above")
        yield Broken()


async def test_a_widget_that_fails_to_draw_shows_a_note_and_the_app_goes_on() -> None:
    app = BrokenApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "⚠ could not draw this: ValueError: math domain error" in text
        assert "above" in text
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert app.is_running


async def test_a_pane_whose_data_step_raises_is_marked_and_recovers(db: Path) -> None:
    app = fixed_app(db)
    async with app.run_test(size=(160, 48)) as pilot:
        chart = app.dash.query_one(ScoreChart)
        show = ScoreChart.show

        def broken(self: ScoreChart, *args: object) -> None:
            raise OverflowError("cannot convert float infinity to integer")

        ScoreChart.show = broken  # type: ignore[method-assign]
        try:
            app._draw_chart()
            await pilot.pause()
            assert chart.draw_error and "OverflowError" in chart.draw_error
            assert "could not draw this: OverflowError" in screen_text(app)
        finally:
            ScoreChart.show = show  # type: ignore[method-assign]
        app._draw_chart()
        await pilot.pause()
        assert chart.draw_error is None
        assert app.is_running
