"""At 80×24 nothing is cut mid-word: numbers have a compact form that fits their columns, the
changelog's columns stay aligned whatever the values (in the terminal and in SVG pictures),
dialogs wrap, the footer drops keys rather than cut one, and the status line is one line."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.text import Text
from textual.screen import ModalScreen

from engine.host import take_lock
from tests.test_tui_render import screen_text
from tui.app import make_app
from tui.changelog_pane import Changelog
from tui.dialogs import ConfirmScreen
from tui.fixtures import EPOCH, build_store, wait_until
from tui.footer import LeanFooter
from tui.status_line import StatusLine
from tui.summary import Outlook, fmt_delta, fmt_num, fmt_score


@pytest.mark.parametrize(("value", "shown"), [
    (0.8333333, "0.8333"), (1.0, "1"), (17_500.0, "17.5k"), (1_134_567.0, "1.135M"),
    (-0.0833333, "-0.0833"), (999.96, "1k"), (0.000123, "123µ"), (0.0, "0"), (None, "-"),
    (float("nan"), "nan"), (3e30, "3e30"), (-2e-300, "-2e-300")])
def test_scores_are_compact_and_never_cut(value: float | None, shown: str) -> None:
    assert fmt_score(value) == shown


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_score_fits_its_column_and_every_delta_too(value: float) -> None:
    assert len(fmt_score(value)) <= 7  # the score column
    assert len(fmt_delta(value, "maximize")[0]) <= 9  # the delta column


def test_a_number_printed_as_text_is_shown_as_text() -> None:
    assert fmt_num("\x1b[2Jhigh") == "␛[2Jhig"  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "fit.db"
    build_store(path, runs=2, experiments=240).close()
    return path


def svg_lines(svg: str) -> list[list[tuple[float, str]]]:
    """Each line's text elements (x, text), top to bottom."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>',
                         svg):
        text = html.unescape(m[3]).replace("\xa0", " ")
        rows.setdefault(float(m[2]), []).append((float(m[1]), text))
    return [rows[y] for y in sorted(rows)]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_changelog_columns_line_up_with_negative_deltas_even_in_svg(
        db: Path, size: tuple[int, int]) -> None:
    app = make_app(db, [], attach=True)
    app.clock = lambda: EPOCH + 300.0
    async with app.run_test(size=size) as pilot:
        await pilot.press("right_square_bracket")  # the metric run: big negative deltas
        await pilot.pause(0.5)
        table = app.dash.query_one(Changelog).table
        shown = [table.rows[k] for k in table.keys()[: size[1] // 3]]
        assert any(r.cells["delta"].plain.startswith("-") for r in shown)
        svg = app.export_screenshot()
    lines = svg_lines(svg)
    header = next(line for line in lines if any("description" in t for _, t in line))
    x, text = next((x, t) for x, t in header if "description" in t)
    char = 12.2  # Rich's SVG cell width
    desc_x = x + text.index("description") * char
    rows = [line for line in lines if any(re.search(r"#\d+$", t.strip()) for _, t in line)]
    assert len(rows) >= 5
    for line in rows:
        # Every row's description is its own text element at the column's own x, whatever
        # its delta: a renderer that fits a segment's glyphs to its width (SVG textLength)
        # cannot shift later columns (issue 12).
        assert any(abs(x - desc_x) < 0.5 for x, _ in line), (desc_x, line)


async def test_the_stop_dialog_wraps_at_80_columns(db: Path) -> None:
    app = make_app(db, [], attach=True)
    detail = ("The experiment in flight is recorded as interrupted; running the spec again "
              "resumes.")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(ConfirmScreen("Stop run demo-sqlite-load-with-a-long-name?",
                                            detail))
        await pilot.pause(0.3)
        box = app.screen.query_one("Vertical").region
        lines = screen_text(app).splitlines()[box.y:box.bottom]
        inside = [line[box.x + 1:box.right - 1].strip() for line in lines]
        assert box.right <= 80
        text = " ".join(" ".join(inside).split())
        assert detail in text and "long-name?" in text  # every word whole, wrapped


@pytest.mark.parametrize("width", [40, 60, 80, 100])
async def test_the_footer_drops_keys_rather_than_cut_one(tmp_path: Path, width: int) -> None:
    db = tmp_path / "paused.db"
    build_store(db, runs=1, experiments=30, live=True).close()
    from engine.store import Store

    store = Store(db)
    store.update_run(store.runs()[0]["id"], status="paused")
    store.close()
    lock = take_lock(db, "classifier-1")
    try:
        app = make_app(db, [], attach=True)
        async with app.run_test(size=(width, 24)) as pilot:
            footer = app.dash.query_one(LeanFooter)
            await wait_until(pilot, lambda: len(footer.query("FooterKey")) >= 2, 5, "keys")
            await pilot.pause(0.3)
            last = screen_text(app).splitlines()[-1]
            for key in footer.query("FooterKey"):
                assert f"{key.key_display} {key.description}" in last, (last, key.description)
            assert "q Quit" in last  # the most important stays
            if width >= 80:
                assert "p Resume" in last
    finally:
        lock.close()


@pytest.mark.parametrize("width", [40, 80])
async def test_the_status_line_is_one_line_and_keeps_the_last_command(db: Path,
                                                                      width: int) -> None:
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(width, 24)):
        line = app.dash.query_one(StatusLine)
        outlook = [Outlook("12 rounds left", 0.5), Outlook("target 1: 0/3 in a row", 0.1),
                   Outlook("plateau 3/40", 0.07)]
        line.show("demo-classifier", Text("▶ running"), "$0.0000", outlook,
                  Text("pause → applied: paused"))  # (drawn at once: no tick comes between)
        assert line.size.height == 1
        assert len(line.text) <= width - 2
        assert "applied: paused" in line.text or width < 60
        assert "demo-classifier" in line.text


#: Every full screen and modal, by the keys that open it from the dashboard (the command's
#: details: Enter on its ⚑ row, selected first).
SCREENS = {"tree": ["t"], "experiment": ["enter"], "label": ["l"], "help": ["question_mark"],
           "command": ["enter"], "export": ["e"], "filter": ["slash"]}
OPENS = {"tree": "TreeScreen", "experiment": "ExperimentScreen", "label": "LabelScreen",
         "help": "HelpScreen", "command": "CommandScreen", "export": "PromptScreen",
         "filter": "Dashboard"}


@pytest.fixture
def demo_db(tmp_path: Path) -> Path:
    """The recorded demo's store (tests/fixtures/demo.db, a long run name) with one guidance
    command: its ⚑ row opens the command's details."""
    from engine.store import Store
    from tests.test_tui_snapshots import DEMO_STORE

    db = tmp_path / "autoresearch.db"
    db.write_bytes(DEMO_STORE.read_bytes())
    store = Store(db)
    run = next(r for r in store.runs() if r["name"] == "demo-classifier")
    cid = store.add_command(run["id"], "guide", argument="prefer smaller hidden layers " * 6)
    store.mark_applied(cid, "the params mutator does not read guidance")
    store.close()
    return db


@pytest.mark.parametrize(("name", "size"), [(name, (80, 24)) for name in sorted(SCREENS)] + [
    (name, (160, 48)) for name in ("experiment", "label", "tree")])  # the full screens
async def test_every_screen_keeps_its_head_on_one_line_and_its_footer_whole(
        demo_db: Path, name: str, size: tuple[int, int]) -> None:
    width, height = size
    app = make_app(demo_db, [], attach=True)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.board.detail is not None, 5, "a run")
        run = next(r for r in app.board.runs.values() if r["name"] == "demo-classifier")
        app.select_run(run["id"])
        changelog = app.dash.query_one(Changelog)
        await wait_until(pilot, lambda: str(run["best_experiment"]) in changelog.table.rows,
                         5, "the classifier's changelog")
        if name in ("command", "experiment"):  # the newest ⚑ row, or experiment row
            key = next(k for k in changelog.table.keys() if k.startswith("c") == (
                name == "command"))
            changelog.table.following = False
            changelog.table.move_cursor(changelog.table.row_index(key))
        app.set_focus(changelog.table)
        await pilot.press(*SCREENS[name])
        await pilot.pause(0.5)
        screen = app.screen
        assert type(screen).__name__ == OPENS[name]
        text = screen_text(app).splitlines()
        assert len(text) == height
        # A screen's head is one line: the run first, cut with … rather than wrapped.
        for head in screen.query("#tree-head, #exp-head, #label-head"):
            assert head.region.height == 1, (name, str(head.render()))
            assert "demo-classifier" in text[head.region.y]
        # A modal's box is inside the terminal, its heading one line.
        for box in screen.query("VerticalScroll, Vertical").results():
            if isinstance(screen, ModalScreen) and box.parent is screen:
                assert box.region.right <= width and box.region.bottom <= height
                first = box.children[0]
                assert first.region.height == 1, (name, str(first.render()))
        # The footer shows whole keys: each as "k Label" on the last line. (A modal has
        # none: its box says how it closes; the dashboard's footer behind it is dimmed.)
        if isinstance(screen, ModalScreen):
            return
        keys = list(screen.query("FooterKey"))
        assert keys, name
        for key in keys:
            assert f"{key.key_display} {key.description}" in text[-1], (name, text[-1])
            assert key.region.right <= width
        if name == "tree":  # the detail: three lines, each cut rather than wrapped
            detail = screen.query_one("#tree-detail").region
            assert text[detail.bottom - 1].lstrip().startswith(("why:", "enter open")), \
                text[detail.y:detail.bottom]


def test_the_tree_head_counts_in_words_that_agree() -> None:
    from tui.tree_screen import _count

    assert _count(1, "version") == "1 version" and _count(3, "version") == "3 versions"
    assert _count(0, "experiment") == "0 experiments"
