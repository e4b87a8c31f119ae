"""Attach mode: a headless engine runs in another process (as in tmux on a GPU box) and the
app, attached to the same store, watches it live and steers it exactly as in-process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.store import Store
from tests.conftest import cli_env, metric_spec
from tui.app import AutoresearchApp, make_app
from tui.changelog_pane import Changelog
from tui.fixtures import wait_until
from tui.runs_pane import RunsPane
from tui.status_line import StatusLine


@pytest.fixture
def headless(tmp_path: Path, params_workspace: Path) -> Iterator[subprocess.Popen[str]]:
    """`autoresearch-tui run SPEC --headless` in its own process, stopped at the end."""
    delay = tmp_path / "delay"
    delay.write_text("0.3")
    spec = metric_spec(params_workspace, name="remote", stop="max_rounds: 500",
                       command=f"sleep $(cat {delay}) && python score.py")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "run", str(spec), "--headless", "--db",
         str(tmp_path / "a.db")], env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (tmp_path / "a.db").exists():
            runs = Store(tmp_path / "a.db").runs()
            if runs and runs[0]["best_experiment"]:
                break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("the headless engine did not score its baseline in 30 s")
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def run(app: AutoresearchApp) -> dict[str, Any]:
    return app.board.runs[app.selected_run]


def status(app: AutoresearchApp) -> str:
    return app.dash.query_one(StatusLine).text


async def test_an_attached_app_steers_a_headless_engine(tmp_path: Path,
                                                        headless: subprocess.Popen[str]) -> None:
    app = make_app(tmp_path / "a.db", [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.selected_run and app.alive.get(app.selected_run),
                         10, "the app to see the engine alive")
        assert app.engine is None  # nothing is hosted here
        # Live: each experiment shows up within a second of landing in the store.
        lags = []
        seen = max(app.board.detail.points)
        for _ in range(3):
            newest = await wait_until(pilot, lambda after=seen: next(
                (i for i, p in app.board.detail.points.items()
                 if i > after and p[1] != "running"), None), 10, "a new verdict")
            lags.append(time.time() - Store(app.db).experiment(newest)["finished"])
            seen = newest
        assert max(lags) < 1.0, lags
        # Pause and resume, through the store, applied by the other process.
        await pilot.press("p")
        await wait_until(pilot, lambda: "pause → applied: paused" in status(app), 5)
        assert run(app)["status"] == "paused"
        await pilot.press("g", *"prefer x near 7", "enter")
        await wait_until(pilot, lambda: "does not read guidance" in status(app), 5)
        # Veto the best kept experiment: the other process reverts it.
        kept = max((i for i, p in app.board.detail.points.items() if p[1] == "kept"),
                   default=None)
        if kept is not None:
            app.dash.query_one(Changelog).select_experiment(kept)
            await pilot.press("v", "y")
            await wait_until(pilot, lambda: f"applied: reverted #{kept}" in status(app), 5)
            await wait_until(pilot, lambda: app.board.detail.points[kept][1] == "vetoed", 5)
        await pilot.press("p")
        await wait_until(pilot, lambda: run(app)["status"] == "running", 5, "resumed")
        # Stop: the headless engine finishes cleanly and exits.
        await pilot.press("s", "y")
        await wait_until(pilot, lambda: run(app)["status"] == "stopped", 10, "stopped")
        await wait_until(pilot, lambda: headless.poll() is not None, 15, "the engine to exit")
        await wait_until(pilot, lambda: app.alive.get(app.selected_run) is None, 5)
    assert headless.returncode == 0
    verbs = {c["verb"]: c["result"] for c in Store(tmp_path / "a.db").commands()}
    assert verbs["pause"] == "paused" and verbs["resume"] == "resumed"
    assert verbs["stop"] == "stopping"


async def test_a_killed_engine_shows_as_gone_and_commands_wait(
        tmp_path: Path, headless: subprocess.Popen[str]) -> None:
    headless.kill()  # SIGKILL: no chance to record anything
    headless.wait(timeout=10)
    app = make_app(tmp_path / "a.db", [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.alive.get(app.selected_run) is False, 5)
        await wait_until(pilot, lambda: "? no engine" in status(app), 5)
        card = app.dash.query_one(RunsPane).view.card_of(app.selected_run)
        assert "no engine" in card.status
        await pilot.press("p")
        await pilot.pause(0.5)
        assert any("No engine is running remote" in n.message for n in app._notifications)
        assert "waiting for the engine" in status(app)
    (pending,) = Store(tmp_path / "a.db").commands()
    assert pending["applied"] is None  # kept for the next engine that picks the run up
