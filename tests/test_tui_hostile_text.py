"""Text from a model, an evaluation or a worker is shown, never obeyed: terminal control
sequences (retitle, clear screen, colours) and Rich markup in any of it reach the screen as
visible characters — in every pane, the experiment screen's tabs and the notifications."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from textual.widgets import DataTable

from engine.store import Store
from tests.test_tui_render import screen_text
from tui.app import make_app
from tui.experiment_screen import ExperimentScreen
from tui.fixtures import build_store, wait_until

RETITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
RED = "\x1b[31m"
HOSTILE = f"{RETITLE}{CLEAR}{RED}[bold red]loud[/bold red] words"


def hostile_store(tmp_path: Path) -> tuple[Path, int]:
    """A fixed store whose newest experiment carries hostile text in every field shown."""
    db = tmp_path / "hostile.db"
    build_store(db, runs=1, experiments=20).close()
    store = Store(db)
    exp_id = store.max_experiment_id()
    run_id = store.runs()[0]["id"]
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE experiments SET description = ?, reason = ?, worker = ?, diff = ?, "
            "error = ?, log_tail = ?, rationale = ?, metrics_json = ? WHERE id = ?",
            [HOSTILE, HOSTILE, f"w{RED}1", f"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+{HOSTILE}\n",
             HOSTILE, HOSTILE, HOSTILE, '{"score": 1, "[bold]k\\u001b[2J": "[red]v"}', exp_id])
        conn.execute("UPDATE item_results SET evidence = ? WHERE experiment_id = ?",
                     [HOSTILE, exp_id])
    conn.close()
    store.add_event(run_id, HOSTILE, source="ssh:gpu", experiment_id=exp_id)
    store.close()
    return db, exp_id


def assert_safe(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert "[bold red]loud" in text  # markup shown as typed, never applied


async def test_hostile_text_is_shown_not_obeyed_everywhere(tmp_path: Path) -> None:
    db, exp_id = hostile_store(tmp_path)
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(0.3)
        dashboard = screen_text(app)
        assert_safe(dashboard)
        assert "␛" in dashboard  # the escape is visible as a placeholder
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ExperimentScreen) and screen.exp_id == exp_id
        for tab in "1234":
            await pilot.press(tab)
            await pilot.pause(0.1)
            text = screen_text(app)
            assert "\x1b" not in text and "\x07" not in text, (tab, repr(text))
        head = str(screen.query_one("#exp-head").render())  # one line: the worker's
        assert "\x1b" not in head and "\x07" not in head, repr(head)
        assert_safe(str(screen.query_one("#exp-about").render()))  # description, why
        evidence = screen.query_one("#evidence-table", DataTable)
        assert "[bold red]loud" in str(evidence.get_row_at(0)[4])
        await pilot.press("escape")

        # A notification made of an engine's result (markup in it is not applied).
        store = Store(db)
        cid = await store.send_command(app.selected_run, "guide", argument=HOSTILE)
        app.board.mine.add(cid)
        app.board.pending.add(cid)
        store.mark_applied(cid, HOSTILE)
        await wait_until(pilot, lambda: app._notifications, 5, "the notification")
        (note,) = list(app._notifications)
        assert "[bold red]loud" in note.message and "\x1b" not in note.message
        await pilot.pause(0.2)
        assert_safe(screen_text(app))
