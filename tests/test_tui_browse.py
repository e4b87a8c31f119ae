"""The keys that read rather than steer — enter, /, e, ?, n, [ ], 1-5 — on a store with fixed
data, and what the app does with no runs, a finished run, and a long changelog."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList

from engine.store import Store
from tests.conftest import metric_spec
from tui.app import make_app
from tui.changelog_pane import Changelog
from tui.dialogs import NewRunScreen, PromptScreen
from tui.experiment_screen import ExperimentScreen
from tui.fixtures import build_store, wait_until
from tui.help_screen import HelpScreen
from tui.status_line import StatusLine
from tui.steering import export_format


def fixed(tmp_path: Path, **kwargs: int) -> Path:
    db = tmp_path / "fixed.db"
    build_store(db, **kwargs).close()
    return db


async def test_enter_opens_the_experiment_with_its_diff_evidence_and_log(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        changelog = app.dash.query_one(Changelog)
        newest = changelog.selected_experiment()
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ExperimentScreen) and screen.exp_id == newest
        assert f"#{newest}" in str(screen.query_one("#exp-head").render())
        await pilot.press("2")
        evidence = screen.query_one("#evidence-table", DataTable)
        assert evidence.row_count == 12  # 4 items × 3 samples
        assert {str(evidence.get_row_at(0)[0])} <= {"accurate", "fast", "small", "not-overfit"}
        await pilot.press("escape")
        assert app.screen is app.dash


async def test_slash_filters_the_changelog_and_escape_clears_it(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.dash.query_one(Changelog).table
        everything = table.row_count
        await pilot.press("slash", *"kept", "enter")
        await wait_until(pilot, lambda: table.row_count < everything, 5, "the filter")
        verdicts = {table.get_cell(key, "verdict").plain for key in table.rows}
        assert verdicts == {"kept"}
        assert app.focused is table  # enter went back to the table, the filter stays
        await pilot.press("slash", "escape")
        await wait_until(pilot, lambda: table.row_count == everything, 5, "the full changelog")


async def test_e_exports_the_changelog_in_the_format_its_name_asks_for(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    out = tmp_path / "changes.tsv"
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("e")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        assert prompt.query_one("Input").value == "classifier-1-changelog.md"
        prompt.query_one("Input").value = str(out)
        await pilot.press("enter")
        await wait_until(pilot, out.exists, 5, "the export")
    rows = list(csv.reader(out.open(), delimiter="\t"))
    assert rows[0][:4] == ["commit", "score", "status", "description"]
    assert len(rows) == 1 + 60


async def test_e_also_writes_autoresearch_results_tsv_and_pi_jsonl(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    results, pi = tmp_path / "results.tsv", tmp_path / "run.pi.jsonl"
    async with app.run_test(size=(160, 48)) as pilot:
        app.export(results)
        app.export(pi)
        await pilot.pause()
    header = results.read_text().splitlines()[0].split("\t")
    assert header[0] == "commit" and header[3:] == ["status", "description"]
    first = json.loads(pi.read_text().splitlines()[0])
    assert first["type"] == "config" and first["bestDirection"] == "higher"
    assert export_format(tmp_path / "x.results-tsv") is None  # a format's name is no suffix
    assert export_format(tmp_path / "LOG.JSONL") == "pi-jsonl"
    assert export_format(tmp_path / "notes") == "md"


async def test_e_refuses_an_unknown_format_with_a_message(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        app.export(tmp_path / "changes.xlsx")
        await pilot.pause()
        assert any("unknown format .xlsx" in n.message for n in app._notifications)
    assert not (tmp_path / "changes.xlsx").exists()


async def test_question_mark_lists_the_keys(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is app.dash


async def test_n_starts_a_run_from_a_spec_in_checklists(tmp_path: Path, params_workspace: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Attached to an empty store, `n` hosts a new run in the app itself."""
    spec = metric_spec(params_workspace, name="fresh", stop="max_rounds: 3")
    (tmp_path / "checklists").mkdir()
    spec.rename(tmp_path / "checklists" / "fresh.yaml")
    (tmp_path / "checklists" / "fresh.yaml").write_text(
        (tmp_path / "checklists" / "fresh.yaml").read_text().replace("workspace: ws",
                                                                     "workspace: ../ws"))
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path / "new.db", [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        assert "no runs yet" in app.dash.query_one(StatusLine).text
        await pilot.press("n")
        assert isinstance(app.screen, NewRunScreen)
        options = app.screen.query_one(OptionList)
        assert options.get_option_at_index(0).prompt == "checklists/fresh.yaml"
        assert app.focused is options
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.board.runs and app.selected_run, 10, "the run")
        await wait_until(pilot, lambda: app.board.runs[app.selected_run]["status"] == "done",
                         30, "the run to finish")
    assert Store(tmp_path / "new.db").get_run("fresh")["rounds"] == 3


async def test_n_with_a_bad_path_says_why_and_stays_open(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no checklists/ here: the dialog starts on the path box
    app = make_app(tmp_path / "new.db", [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        assert "No specs in" in str(app.screen.query_one(".hint").render())
        await pilot.press(*"nowhere.yaml", "enter")
        assert isinstance(app.screen, NewRunScreen)
        assert "no such spec file" in str(app.screen.query_one(".error").render())
        await pilot.press("escape")
        assert app.engine is None  # nothing was started


async def test_number_keys_show_one_pane_at_a_time_on_a_narrow_terminal(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.narrow
        shown = lambda: [p for p in ("runs", "changelog", "chart", "checklist", "workers")  # noqa: E731
                         if app.dash.query_one(f"#{p}").display]
        assert shown() == ["changelog"]
        for key, pane in [("1", "runs"), ("3", "chart"), ("4", "checklist"), ("5", "workers"),
                          ("2", "changelog")]:
            await pilot.press(key)
            assert shown() == [pane]
        await pilot.resize_terminal(160, 48)
        await wait_until(pilot, lambda: not app.narrow, 5, "the wide layout")
        assert len(shown()) == 5


async def test_brackets_move_between_runs(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path, runs=3, experiments=90), [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        names = lambda: app.board.runs[app.selected_run]["name"]  # noqa: E731
        assert names() == "classifier-1"
        await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: names() == "sqlite-load-2", 5)
        assert app.dash.query_one("#checklist").border_title == "Metric"
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_until(pilot, lambda: names() == "classifier-3", 5)


async def test_steering_keys_are_dimmed_for_a_finished_run(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        for action in ("pause", "stop_run", "guide", "veto", "pin"):
            assert app.check_action(action, ()) is None, action
        await pilot.press("p", "s", "g", "v", "i")
        assert Store(app.db).commands() == []


async def test_the_changelog_pages_older_rows_in_as_the_cursor_goes_down(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path, runs=1, experiments=700), [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.dash.query_one(Changelog).table
        assert table.row_count == 200
        await pilot.press("ctrl+end")
        await wait_until(pilot, lambda: table.row_count == 400, 5, "the second page")
        keys = [int(k) for k in table.keys()]
        assert len(set(keys)) == 400


async def test_the_command_palette_offers_every_action(tmp_path: Path) -> None:
    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=(80, 24)):
        listed = [c.title for c in app.get_system_commands(app.screen)]
        titles = set(listed)
        assert listed.count("Keys") == 1  # Textual's own "Keys" is not listed beside ours
    for wanted in ("Pause or resume the run", "Veto the selected experiment",
                   "Pin the selected experiment", "Stop the run", "Guidance for the mutator",
                   "Export the changelog", "Filter the changelog", "Start a run from a spec",
                   "Sort the runs",
                   "Keys"):
        assert wanted in titles


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_the_filter_box_shows_what_is_typed_before_enter(tmp_path: Path,
                                                               size: tuple[int, int]) -> None:
    from tests.test_tui_render import screen_text

    app = make_app(fixed(tmp_path), [], attach=True)
    async with app.run_test(size=size) as pilot:
        await pilot.press("slash", *"hidd")
        await pilot.pause()
        lines = screen_text(app).splitlines()
        typed = [line for line in lines if "hidd" in line and "→" not in line]
        assert typed, "\n".join(lines)  # the box's own line, not a matching row
        assert "▔" not in "".join(lines)  # no border in its place
