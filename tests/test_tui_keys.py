"""Every steering key, driven through Textual's Pilot against the real engine hosted in the
app: the key writes a command row, the engine applies it, and the app shows the result."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.spec import Spec, load_spec
from engine.store import Store
from tests.conftest import metric_spec
from tests.test_tui_render import screen_text
from tui.app import AutoresearchApp, make_app
from tui.board import Board
from tui.changelog_pane import Changelog
from tui.command_screen import CommandScreen
from tui.dialogs import ConfirmScreen, PromptScreen
from tui.fixtures import wait_until
from tui.status_line import StatusLine


@pytest.fixture
def delay(tmp_path: Path) -> Path:
    """Seconds each evaluation sleeps; a test raises it to hold an experiment in flight."""
    path = tmp_path / "delay"
    path.write_text("0.2")
    return path


@pytest.fixture
def toy(params_workspace: Path, delay: Path) -> Spec:
    spec = metric_spec(params_workspace, name="toy", stop="max_rounds: 500",
                       command=f"sleep $(cat {delay}) && python score.py")
    return load_spec(spec)


@asynccontextmanager
async def hosted(tmp_path: Path, spec: Spec) -> AsyncIterator[tuple[AutoresearchApp, Any]]:
    """The app hosting `spec` in-process, at the wide size, once the run is going."""
    app = make_app(tmp_path / "keys.db", [spec], attach=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: run(app) and run(app)["best_experiment"], 30,
                         "the baseline")
        yield app, pilot


def run(app: AutoresearchApp) -> dict[str, Any] | None:
    return app.board.runs.get(app.selected_run) if app.selected_run else None


def points(app: AutoresearchApp) -> dict[int, list[Any]]:
    return app.board.detail.points if app.board.detail else {}


def first(app: AutoresearchApp, verdict: str) -> int | None:
    return next((i for i, p in points(app).items() if p[1] == verdict and p[2] is not None), None)


def slow_in_flight(app: AutoresearchApp) -> bool:
    """An experiment has been evaluating for over a second (so it began after a slow-down)."""
    return any(time.time() - r["started"] > 1.0 for r in app.board.running.values())


def status(app: AutoresearchApp) -> str:
    return app.dash.query_one(StatusLine).text


def commands(app: AutoresearchApp) -> list[dict[str, Any]]:
    return Store(app.db).commands(None)


async def test_p_pauses_the_run_and_p_again_resumes_it(tmp_path: Path, toy: Spec) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        await pilot.press("p")
        await wait_until(pilot, lambda: run(app)["status"] == "paused", what="paused")
        await wait_until(pilot, lambda: "pause → applied: paused" in status(app))
        assert app.active_bindings["p"].binding.description == "Resume"
        await pilot.press("p")
        await wait_until(pilot, lambda: run(app)["status"] == "running", what="resumed")
        await wait_until(pilot, lambda: "applied: resumed" in status(app))
    done = {c["verb"]: c for c in commands(app)}
    assert done["pause"]["result"] == "paused" and done["resume"]["result"] == "resumed"
    for command in done.values():  # applied by the engine within a second of being written
        assert command["applied"] - command["created"] < 1.0


async def test_v_vetoes_the_experiment_in_flight(tmp_path: Path, toy: Spec,
                                                 delay: Path) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        delay.write_text("8")  # in flight long enough for the veto to land first, under load too
        await wait_until(pilot, lambda: slow_in_flight(app), 10, "a slow experiment in flight")
        target = max(app.board.running)
        app.dash.query_one(Changelog).select_experiment(target)
        await pilot.press("v")
        await wait_until(pilot, lambda: f"vetoed in flight: #{target}" in status(app), 15)
        await wait_until(pilot, lambda: points(app)[target][1] == "vetoed", 20,
                         "the vetoed verdict")
        row = Store(app.db).experiment(target)
        assert row["reason"] == "vetoed while in flight"


async def test_v_on_a_kept_experiment_asks_first_then_reverts_it(tmp_path: Path,
                                                                 toy: Spec) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        kept = await wait_until(pilot, lambda: first(app, "kept"), 30, "a kept experiment")
        await pilot.press("p")
        await wait_until(pilot, lambda: run(app)["status"] == "paused")
        app.dash.query_one(Changelog).select_experiment(kept)
        await pilot.press("v")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: f"applied: reverted #{kept}" in status(app), 5)
        await wait_until(pilot, lambda: points(app)[kept][1] == "vetoed", 5)
        table = app.dash.query_one(Changelog).table
        assert table.get_cell(str(kept), "verdict").plain == "vetoed"
        assert run(app)["best_experiment"] != kept


async def test_v_then_n_in_the_dialog_sends_nothing(tmp_path: Path, toy: Spec) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        kept = await wait_until(pilot, lambda: first(app, "kept"), 30, "a kept experiment")
        await pilot.press("p")
        await wait_until(pilot, lambda: run(app)["status"] == "paused")
        app.dash.query_one(Changelog).select_experiment(kept)
        await pilot.press("v", "n")
        assert not isinstance(app.screen, ConfirmScreen)
        assert [c for c in commands(app) if c["verb"] == "veto"] == []


async def test_i_pins_a_reverted_experiment_and_makes_it_the_best(tmp_path: Path,
                                                                  toy: Spec) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        loser = await wait_until(pilot, lambda: first(app, "reverted"), 30, "a reverted one")
        await pilot.press("p")  # hold still, so nothing better replaces the pinned one
        await wait_until(pilot, lambda: run(app)["status"] == "paused")
        # The pause is applied at once (the command rings the engine): the experiment in
        # flight lands after it, and would be kept over a pinned loser.
        await wait_until(pilot, lambda: not app.board.running, 10, "the one in flight")
        app.dash.query_one(Changelog).select_experiment(loser)
        await pilot.press("i")
        await wait_until(pilot, lambda: f"#{loser} pinned and made the best version"
                         in status(app), 5)
        await wait_until(pilot, lambda: run(app)["best_experiment"] == loser, 5)
        await wait_until(pilot, lambda: points(app)[loser][1] == "pinned", 5)


async def test_s_stops_the_run_after_asking(tmp_path: Path, toy: Spec) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: run(app)["status"] == "stopped", 10, "stopped")
        assert app.engine is not None and app.engine.active() == []
        assert app.check_action("stop_run", ()) is None  # dimmed in the footer now
        assert "stopped" in status(app)


async def test_g_sends_guidance_for_the_next_proposals_and_enter_on_its_row_shows_it(
        tmp_path: Path, toy: Spec) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        await pilot.press("g")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"try x=7", "enter")
        await wait_until(pilot, lambda: "does not read guidance" in status(app), 5)
        guide = next(c for c in commands(app) if c["verb"] == "guide")
        assert guide["argument"] == "try x=7"
        cell = app.dash.query_one(Changelog).table.get_cell(f"c{guide['id']}", "description")
        assert "'try x=7'" in cell.plain and "applied" in cell.plain
        # Enter on the ⚑ row: what was asked, when, and what the engine did with it.
        changelog = app.dash.query_one(Changelog)
        changelog.table.following = False
        changelog.table.move_cursor(changelog.table.row_index(f"c{guide['id']}"))
        app.set_focus(changelog.table)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandScreen), 5, "the command")
        box = app.screen.query_one("VerticalScroll").region  # what the box shows, unwrapped
        lines = screen_text(app).splitlines()[box.y:box.bottom]
        shown = " ".join(" ".join(row[box.x + 1:box.right - 1] for row in lines).split())
        assert "guide" in shown and "try x=7" in shown and "asked" in shown
        assert "does not read guidance" in shown  # its outcome
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, CommandScreen), 5)


async def test_q_stops_hosted_runs_cleanly_then_quits(tmp_path: Path, toy: Spec,
                                                      delay: Path) -> None:
    async with hosted(tmp_path, toy) as (app, pilot):
        delay.write_text("4")
        await wait_until(pilot, lambda: slow_in_flight(app), 10, "a slow experiment in flight")
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None, 10, "the app to exit")
    assert app.return_code == 0
    store = Store(tmp_path / "keys.db")
    (row,) = store.runs()
    assert row["status"] == "stopped"
    assert store.running_experiments() == []  # the one in flight is recorded as interrupted
    assert "interrupted" in store.run_stats(row["id"])["verdicts"]


async def test_a_ctrl_c_during_the_baseline_stops_at_once(tmp_path: Path, toy: Spec,
                                                         delay: Path) -> None:
    """A stop does not wait for a long baseline: it is cancelled and recorded interrupted."""
    delay.write_text("30")
    app = make_app(tmp_path / "keys.db", [toy], attach=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.board.running, 15, "the baseline in flight")
        started = time.monotonic()
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: app.return_code is not None, 10, "the app to exit")
    assert app.return_code == 0
    assert time.monotonic() - started < 5
    store = Store(tmp_path / "keys.db")
    assert store.running_experiments() == []
    (baseline,) = store.experiments(store.runs()[0]["id"])
    assert baseline["verdict"] == "interrupted"


async def test_a_second_ctrl_c_within_two_seconds_forces(tmp_path: Path, toy: Spec,
                                                         delay: Path) -> None:
    """While a clean stop is still under way, a second Ctrl-C does not wait for it."""
    delay.write_text("30")
    app = make_app(tmp_path / "keys.db", [toy], attach=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.board.running, 15, "the baseline in flight")
        app.engine.stop_all = lambda: None  # a clean stop that has not finished yet
        await pilot.press("ctrl+c")
        await pilot.pause(0.5)
        assert app.return_code is None  # still stopping cleanly
        started = time.monotonic()
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: app.return_code is not None, 5, "the app to exit")
    assert app.return_code == 130
    assert time.monotonic() - started < 3


async def test_steering_a_millisecond_run_never_holds_up_the_app(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """An engine recording millisecond rounds holds the store's write lock most of the
    time, letting go between commits. The app's steering writes share its event loop: were
    they to wait for the lock, the engine could never let go. They never wait."""
    monkeypatch.setattr("engine.store.BUSY_TIMEOUT_S", 5)  # a wait would show, not hang CI
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text("x: 5\n")
    spec = tmp_path / "fast.yaml"
    spec.write_text(
        "name: fast\ntarget: {workspace: ws, files: [params.yaml]}\n"
        "mutator: {kind: params, file: params.yaml, seed: 1,\n"
        "          params: {x: {type: float, min: 0, max: 1000000}}}\n"
        "evaluate: {kind: metric, command: 'echo METRIC loss=1', metric: loss}\n"
        "stop: {max_rounds: 200000, max_failures: null}\n")
    sends: list[float] = []
    send = Board.send

    def timed(self: Board, *args: Any) -> int | None:
        started = time.monotonic()
        try:
            return send(self, *args)
        finally:
            sends.append(time.monotonic() - started)

    monkeypatch.setattr(Board, "send", timed)
    async with hosted(tmp_path, load_spec(spec)) as (app, pilot):
        await wait_until(pilot, lambda: run(app)["rounds"] > 100, 30, "fast rounds")
        for verb in ("pause", "resume") * 3:
            await pilot.press("p")
            want = "paused" if verb == "pause" else "running"
            await wait_until(pilot, lambda want=want: run(app)["status"] == want, 15, verb)
    assert len(sends) == 6 and max(sends) < 1, sends  # none waited for the lock
    assert [c["result"] for c in sorted(commands(app), key=lambda c: c["id"])] == [
        "paused", "resumed"] * 3
