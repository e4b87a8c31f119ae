"""Shipped specs are templates: running one works on a copy and says where; a person's own
spec runs in place."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from engine.templates import TEMPLATES, is_template, load_runnable
from tests.conftest import REPO, cli_env, metric_spec, run_cli


def test_what_is_a_template(tmp_path, params_workspace):
    assert is_template(REPO / "checklists" / "demo" / "sqlite-load.yaml")
    assert is_template("checklists/landing-page.yaml") == (TEMPLATES == REPO / "checklists")
    assert not is_template(metric_spec(params_workspace))
    assert not is_template("no\0such.yaml")
    spec, note = load_runnable(metric_spec(params_workspace), tmp_path / "a.db")
    assert note is None and spec.workspace == params_workspace


def test_running_a_shipped_spec_works_on_a_copy_and_says_where(tmp_path):
    db = tmp_path / "a.db"
    template = REPO / "checklists" / "demo" / "sqlite-load.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "run", str(template),
                             "--headless"], cwd=REPO, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    note = proc.stderr.readline()
    copy = tmp_path / "autoresearch-runs" / "demo-sqlite-load"
    assert note == (f"{template} is a template shipped with autoresearch-tui: running a copy in "
                    f"{copy} (the project's own files are never changed)\n")
    for _ in range(2):  # twice: a forced stop (the baseline takes a while)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    run = json.loads(run_cli("--db", str(db), "status", "--json").stdout)[0]
    assert run["workspace"] == str(copy / "sqlite-load")
    assert (copy / "sqlite-load" / ".git").is_dir() and (copy / "sqlite-load.yaml").is_file()
    untouched = subprocess.run(["git", "status", "--porcelain", "checklists"], cwd=REPO,
                               capture_output=True, text=True).stdout
    assert untouched == ""
    # Run again: the same copy, so the same run resumes there.
    spec, note = load_runnable(template, db)
    assert spec.path == copy / "sqlite-load.yaml" and note is not None


async def test_the_new_run_dialog_runs_a_template_on_a_copy(tmp_path):
    from tui.app import make_app
    from tui.dialogs import NewRunScreen

    db = tmp_path / "a.db"
    app = make_app(db, [], attach=True)
    template = REPO / "checklists" / "demo" / "sqlite-load.yaml"
    chosen = []
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(NewRunScreen(REPO), chosen.append)
        await pilot.pause()
        screen = app.screen
        screen._try(template)  # what enter on the list entry does
        await pilot.pause()
        notes = [n.message for n in app._notifications]
    copy = tmp_path / "autoresearch-runs" / "demo-sqlite-load" / "sqlite-load.yaml"
    assert chosen and chosen[0].path == copy
    assert any("running a copy in" in note for note in notes)
