"""The view follows what is live: it opens on the live run (attach, a second demo), moves to a
run started with `n`, and the changelog's cursor follows the newest row until the person moves
it; `v` with no row picked vetoes the experiment in flight and says which. `n` on a finished
run says what is true, and `g` says whether the run's mutator reads guidance."""

from __future__ import annotations

import time
from pathlib import Path

from engine.host import take_lock
from engine.spec import Spec, load_spec
from engine.store import Store
from tests.conftest import metric_spec
from tests.test_tui_keys import delay, hosted, run, slow_in_flight, status, toy  # noqa: F401
from tui.app import make_app
from tui.changelog_pane import Changelog
from tui.dialogs import NewRunScreen, PromptScreen
from tui.fixtures import build_store, wait_until


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_attach_opens_on_the_live_run_not_the_first(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    build_store(db, runs=3, experiments=60).close()
    store = Store(db)
    live = store.runs()[-1]
    store.update_run(live["id"], status="running", heartbeat=time.time(), engine_pid=1)
    store.close()
    lock = take_lock(db, live["name"])
    try:
        app = make_app(db, [], attach=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.selected_run is not None, 5, "a selection")
            assert app.selected_run == live["id"]
    finally:
        lock.close()


async def test_n_starts_a_run_and_the_view_moves_to_it(tmp_path: Path,
                                                       params_workspace: Path) -> None:
    db = tmp_path / "n.db"
    build_store(db, runs=2, experiments=40).close()  # finished runs, the first one shown
    spec = metric_spec(params_workspace, name="fresh", stop="max_rounds: 3")
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 5, "a selection")
        await pilot.press("n")
        assert isinstance(app.screen, NewRunScreen)
        app.screen.query_one("Input").value = str(spec)
        app.screen.query_one("Input").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: run(app) and run(app)["name"] == "fresh", 20,
                         "the view on the new run")
        await wait_until(pilot, lambda: run(app)["status"] == "done", 30, "the run to finish")

        # `n` again on the finished run: what is true, and how to start it again.
        await pilot.press("n")
        app.screen.query_one("Input").value = str(spec)
        app.screen.query_one("Input").focus()
        await pilot.press("enter")
        said = await wait_until(pilot, lambda: [m for m in notes(app) if "fresh is done" in m],
                                10, "the note")
        assert "new name" in said[0] and "max_rounds" in said[0]
        assert not [m for m in notes(app) if "already running" in m]


async def test_the_cursor_follows_the_newest_row_until_moved(tmp_path: Path,
                                                              toy: Spec) -> None:  # noqa: F811
    async with hosted(tmp_path, toy) as (app, pilot):
        table = app.dash.query_one(Changelog).table

        def newest() -> str:
            return table.keys()[0]

        await wait_until(pilot, lambda: table.row_count >= 4, 20, "rows")
        await wait_until(pilot, lambda: table.selected_key() == newest(), 2, "following")
        count = table.row_count
        await wait_until(pilot, lambda: table.row_count >= count + 2, 20, "more rows")
        assert table.selected_key() == newest()  # followed them in
        await pilot.press("down")
        picked = table.selected_key()
        count = table.row_count
        await wait_until(pilot, lambda: table.row_count >= count + 2, 20, "more rows")
        assert table.selected_key() == picked  # stays where the person put it
        await pilot.press("home")
        count = table.row_count
        await wait_until(pilot, lambda: table.row_count >= count + 1, 20, "a row")
        await wait_until(pilot, lambda: table.selected_key() == newest(), 2, "following again")


async def test_v_with_no_row_picked_vetoes_the_one_in_flight_and_says_which(
        tmp_path: Path, toy: Spec, delay: Path) -> None:  # noqa: F811
    async with hosted(tmp_path, toy) as (app, pilot):
        delay.write_text("3")
        await wait_until(pilot, lambda: slow_in_flight(app), 10, "a slow experiment in flight")
        target = max(app.board.running)
        await pilot.press("v")
        assert "veto (the experiment in flight)" in status(app) or "vetoed in flight" in status(app)
        await wait_until(pilot, lambda: f"vetoed in flight: #{target}" in status(app), 5)
        veto = next(c for c in Store(app.db).commands(None) if c["verb"] == "veto")
        assert veto["target"] is None  # the engine chose, when it applied it


async def test_g_on_a_params_run_says_the_mutator_ignores_guidance(tmp_path: Path,
                                                                   toy: Spec) -> None:  # noqa: F811
    async with hosted(tmp_path, toy) as (app, pilot):
        await pilot.press("g")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        hint = " ".join(str(label.render()) for label in prompt.query("Label"))
        assert "does not read guidance" in hint
        await pilot.press(*"try x=7", "enter")
        await wait_until(pilot, lambda: "does not read guidance" in status(app), 5)


def test_guidance_is_read_by_llm_and_agent_mutators_only() -> None:
    from engine.mutators import reads_guidance

    assert reads_guidance("params") is False
    assert reads_guidance("llm") is True and reads_guidance("agent") is True


_ = load_spec  # the fixtures above load specs through it


async def test_a_running_row_shows_its_time_and_last_line_and_the_status_a_spinner(
        tmp_path: Path) -> None:
    db = tmp_path / "running.db"
    build_store(db, runs=1, experiments=30, live=True).close()
    store = Store(db)
    running = [r["id"] for r in store.running_experiments()]
    store.add_event(store.runs()[0]["id"], "epoch 3/10 loss=0.41", source="local:1",
                    experiment_id=max(running))
    store.close()
    lock = take_lock(db, "classifier-1")
    try:
        app = make_app(db, [], attach=True)
        started = {r["id"]: r["started"] for r in Store(db).running_experiments()}
        app.clock = lambda: started[max(running)] + 95.0
        async with app.run_test(size=(160, 48)) as pilot:
            table = app.dash.query_one(Changelog).table
            cell = await wait_until(pilot, lambda: "epoch 3/10" in table.get_cell(
                str(max(running)), "description").plain and table.get_cell(
                str(max(running)), "description"), 5, "the last line")
            assert "› epoch 3/10 loss=0.41" in cell.plain
            assert table.get_cell(str(max(running)), "time").plain == "1m35s"
            await wait_until(pilot, lambda: "evaluating #" in status(app), 5, "the spinner")
    finally:
        lock.close()
