"""The held-out score in the app: the chart draws it as a second, labelled series beside the
optimized one, and the breakdown shows per item the best version's optimized rates beside its
held-out ones. Runs without held-out rows draw as before (and never crash)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.model import ItemResult
from engine.store import Store
from tests.test_tui_render import widget_text
from tui.app import make_app
from tui.breakdown_pane import Body, Breakdown
from tui.chart_pane import ScoreChart
from tui.fixtures import EPOCH, ITEMS, build_store, wait_until


def add_checkpoints(store: Store, run_name: str) -> list[tuple[int, float]]:
    """Held-out scorings of the run's kept versions, as engine/holdout.py writes them: the
    held-out score falls while the optimized one climbs, and item `fast` is the one gamed."""
    run = store.get_run(run_name)
    kept = [e for e in store.experiments(run["id"]) if e["verdict"] in ("baseline", "kept")]
    out = []
    for n, exp in enumerate(kept):
        held = round(0.8 - 0.1 * n, 4)
        exp_id = store.start_experiment(run["id"], round=exp["round"], kind="holdout",
                                        parent=exp["id"], description=f"held out: #{exp['id']}")
        items = [ItemResult(item, passed=(item != "fast" or n == 0) and s < 2,
                            input=f"held-{s}", sample=0)
                 for item in ITEMS for s in range(3)]
        store.finish_experiment(exp_id, verdict="holdout", items=items,
                                metrics={"holdout_score": held, "optimized_score": exp["score"],
                                         "holdout_se": 0.05})
        out.append((exp["round"], held))
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "held.db"
    store = build_store(path, runs=2, experiments=60)
    add_checkpoints(store, "classifier-1")
    store.close()
    return path


def breakdown_text(app) -> str:
    return str(app.dash.query_one(Breakdown).query_one(Body).render())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_chart_and_breakdown_show_the_held_out_score_beside_the_optimized(
        db: Path, size: tuple[int, int]) -> None:
    app = make_app(db, [], attach=True)
    app.clock = lambda: EPOCH + 300.0
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 5, "a run selected")
        assert app.board.runs[app.selected_run]["name"] == "classifier-1"
        chart = app.dash.query_one(ScoreChart)
        await pilot.press("3")
        await wait_until(pilot, lambda: chart.held_out_points > 0, 5, "the held-out series")
        store = app.board.store
        run = store.get_run("classifier-1")
        assert chart.held_out_points == len(store.experiments_of_kind(run["id"], "holdout"))
        assert "○ held out" in chart.legend  # the series is labelled
        if size[0] >= 160:
            assert "○ held out" in widget_text(chart)
        await pilot.press("4")
        await pilot.pause()
        text = breakdown_text(app)
        best = run["best_experiment"]
        head = text.splitlines()[0]
        assert f"best #{best}" in head and f"#{best}" in head.split("best")[1]
        assert "held" in head  # "held out #N", or "held #N" in a narrow column
        fast = next(row for row in text.splitlines() if row.startswith("fast"))
        assert "  0%" in fast  # the gamed item: nothing passes held out
        assert " 67%" in next(row for row in text.splitlines() if row.startswith("small"))
        assert text.splitlines()[-1].endswith(" · held out 0.2")  # the best's, latest
        assert all(getattr(w, "draw_error", None) is None for w in app.dash.query("*"))
        # The metric run has no held-out rows: its chart and breakdown draw as before.
        await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: app.board.runs[app.selected_run]["name"]
                         == "sqlite-load-2", 5, "the metric run")
        await pilot.press("3")
        await pilot.pause(0.6)  # the chart is redrawn at most twice a second
        assert chart.held_out_points == 0 and chart.draw_error is None
        await pilot.press("4")
        await pilot.pause()
        assert "held out" not in breakdown_text(app)
        assert app.is_running


def test_metric_breakdown_names_the_held_out_value_and_an_earlier_best() -> None:
    from tui.breakdown_pane import Held, Side, metric_text

    best = Side(7, {}, {"ms": 90.0}, 90.0)
    text = metric_text("ms", "minimize", best, best, None, "", 60, 100.0,
                       held=Held(5, Side(9, {}, {}, None), 120.0)).plain
    assert "held out #5" in text and "120" in text and "(an earlier best)" in text
    assert "held out" not in metric_text("ms", "minimize", best, best, None, "", 60).plain
