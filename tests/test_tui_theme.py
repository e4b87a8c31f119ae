"""A theme chosen from the palette recolours the whole app — the changelog's header and rows
too, which are cached as drawn — and is remembered the next time the app opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui import config
from tui.app import make_app
from tui.changelog_pane import Changelog
from tui.fixtures import build_store
from tui.runs_pane import RunsPane
from tui.runs_view import CARD


async def test_a_chosen_theme_recolours_the_changelog_and_is_remembered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    db = tmp_path / "theme.db"
    build_store(db, runs=1, experiments=30).close()
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.3)
        table = app.dash.query_one(Changelog).table
        before = list(table.render_line(0))[1].style
        app.theme = "solarized-light"
        await pilot.pause(0.3)
        after = list(table.render_line(0))[1].style
        assert before != after  # the header took the new theme's colours
    assert config.load() == {"theme": "solarized-light"}
    assert config.path() == tmp_path / "config" / "autoresearch-tui" / "config.json"
    again = make_app(db, [], attach=True)
    assert again.theme == "solarized-light"


async def test_an_unknown_or_broken_config_is_ignored(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    config.path().parent.mkdir(parents=True)
    config.path().write_text("{not json")
    db = tmp_path / "t.db"
    build_store(db, runs=1, experiments=10).close()
    assert make_app(db, [], attach=True).theme == "textual-dark"
    config.path().write_text('{"theme": "no-such-theme"}')
    assert make_app(db, [], attach=True).theme == "textual-dark"


async def test_the_sparkline_has_a_scale_and_reads_on_the_highlighted_card(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    db = tmp_path / "spark.db"
    build_store(db, runs=2, experiments=60).close()
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.3)
        view = app.dash.query_one(RunsPane).view
        assert view.selected is not None and view.index is not None
        assert "→" in view._cards[view.selected].scale  # worst → best, in the scores' units
        # The highlighted card's sparkline line, as drawn.
        strip = view.render_line(view.index * CARD + 1 - round(view.scroll_y))
        bars = [seg for seg in strip if seg.text.strip() and set(seg.text) <= set("▁▂▃▄▅▆▇█")]
        assert bars, strip.text
        spark, background = bars[-1].style.color, bars[-1].style.bgcolor
        assert spark is not None and background is not None
        s, b = spark.get_truecolor(), background.get_truecolor()
        cursor = view.get_component_rich_style("runs--cursor-blurred").bgcolor
        assert background == cursor  # drawn on the highlight
        assert sum(abs(x - y) for x, y in zip(s, b, strict=True)) > 200, (s, b)
