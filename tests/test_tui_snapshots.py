"""Pictures of the main screens at 80×24 and 160×48, from a store with fixed data (never a live
engine), so they are the same on every run: SVG snapshots compared by pytest-textual-snapshot,
and the README's screenshots written into `screenshots/`."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from engine.host import take_lock
from engine.store import Store
from tests.conftest import REPO
from tui.app import AutoresearchApp, make_app
from tui.changelog_pane import Changelog
from tui.fixtures import EPOCH, build_store, wait_until

SMALL, LARGE = (80, 24), (160, 48)
SCREENSHOTS = REPO / "screenshots"


@pytest.fixture(autouse=True)
def no_saved_theme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pictures in the default theme, whatever theme this machine's person chose."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """Three runs; the first still running with two experiments in flight. Its lock is held
    here, as a headless engine would hold it, so the app shows it alive."""
    db = tmp_path / "snap.db"
    build_store(db, runs=3, experiments=300, live=True).close()
    lock = take_lock(db, "classifier-1")
    yield db
    lock.close()


def fixed_app(db: Path) -> AutoresearchApp:
    app = make_app(db, [], attach=True)
    app.clock = lambda: EPOCH + 300.0  # clocks on screen (time in flight) do not move
    return app


CASES = {
    "dashboard": (LARGE, []),
    "dashboard_small": (SMALL, []),
    "runs_small": (SMALL, ["1"]),
    "chart_small": (SMALL, ["3"]),
    "checklist_small": (SMALL, ["4"]),
    "metric_run": (LARGE, ["right_square_bracket"]),
    "experiment": (LARGE, ["down", "down", "enter"]),
    "evidence_small": (SMALL, ["down", "down", "enter", "2"]),
    "help_small": (SMALL, ["question_mark"]),
}


async def settle(pilot: Pilot, keys: list[str]) -> None:
    """Press the keys, then wait until the footer has rebuilt its keys (it does so after
    focus and binding changes), so the picture never catches it half-built."""
    await pilot.press(*keys)
    await pilot.pause(0.5)
    app = pilot.app
    with_footer = app.screen if app.screen.query("Footer") else app.dash  # dialogs have none
    await wait_until(pilot, lambda: len(with_footer.query("FooterKey")) >= 2, 5, "the footer")
    # The once-a-second tick draws what is in flight (elapsed, last line): wait for one, so
    # the picture never depends on whether it came before or after the keys.
    ticks = getattr(app, "_ticks", None)
    if ticks is not None:
        await wait_until(pilot, lambda: app._ticks > ticks, 5, "a clock tick")
    await pilot.pause(0.1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_screen_looks_as_approved(case: str, store: Path, snap_compare) -> None:
    size, keys = CASES[case]
    assert snap_compare(fixed_app(store), terminal_size=size,
                        run_before=lambda pilot: settle(pilot, keys))


#: The README's pictures come from a store the real demo recorded (seeded), frozen here;
#: `python scripts/make-screenshot-store` records it again and redraws them.
DEMO_STORE = REPO / "tests" / "fixtures" / "demo.db"
README_SHOTS = {
    "dashboard-160x48.svg": (LARGE, []),
    "dashboard-80x24.svg": (SMALL, []),
    "chart-80x24.svg": (SMALL, ["3"]),
    "experiment-160x48.svg": (LARGE, ["enter", "2"]),  # its evidence, item by item
}


def demo_app(tmp_path: Path) -> AutoresearchApp:
    """The app on a copy of the recorded demo store, its clock at the demo's end."""
    db = tmp_path / "autoresearch.db"
    shutil.copyfile(DEMO_STORE, db)
    store = Store(db)
    end = max(r["finished"] or 0 for r in store.runs())
    store.close()
    app = make_app(db, [], attach=True)
    app.clock = lambda: end
    return app


def best_with_evidence(app: AutoresearchApp) -> int:
    """The classifier's best version: the experiment whose evidence is worth reading."""
    run = app.board.runs[app.selected_run]
    return run["best_experiment"]


@pytest.mark.parametrize("name", sorted(README_SHOTS))
async def test_readme_screenshot(name: str, tmp_path: Path) -> None:
    size, keys = README_SHOTS[name]
    app = demo_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 5, "a run")
        if "enter" in keys:
            app.dash.query_one(Changelog).select_experiment(best_with_evidence(app))
        await settle(pilot, keys)
        SCREENSHOTS.mkdir(exist_ok=True)
        saved = Path(app.save_screenshot(filename=name, path=str(SCREENSHOTS)))
    text = saved.read_text()
    assert text.startswith("<svg") and "demo-classifier" in text
    if name == "dashboard-160x48.svg":  # "today" is the recorded demo's day (the app's clock)
        assert re.search(r">[1-9][0-9]*&#160;kept&#160;today<", text), "no keeps today shown"
