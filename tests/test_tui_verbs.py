"""The CLI's steering verbs are the app's keys (one table, engine/actions.py): they write the
same command rows, and a mistake is one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

from engine.actions import ACTIONS, VERBS
from engine.store import Store
from tests.conftest import run_cli
from tui.cli import STEER
from tui.fixtures import build_store
from tui.steering import BINDINGS


def test_keys_verbs_help_and_palette_come_from_one_table() -> None:
    assert set(STEER) == set(VERBS)
    keys = {b.action for b in BINDINGS}
    assert {a.name for a in ACTIONS} <= keys


def test_steering_verbs_write_the_rows_the_keys_write(tmp_path: Path) -> None:
    db = tmp_path / "verbs.db"
    build_store(db, runs=1, experiments=20).close()
    done = run_cli("--db", str(db), "pause", "classifier-1")
    assert done.returncode == 0, done.stderr
    assert "written; classifier-1 is done" in done.stdout
    assert run_cli("--db", str(db), "guide", "classifier-1", "try", "[bold]x").returncode == 0
    assert run_cli("--db", str(db), "veto", "classifier-1").returncode == 0
    assert run_cli("--db", str(db), "pin", "classifier-1", "5").returncode == 0
    rows = sorted(Store(db).commands(None), key=lambda c: c["id"])
    assert [(c["verb"], c["target"], c["argument"]) for c in rows] == [
        ("pause", None, None), ("guide", None, "try [bold]x"), ("veto", None, None),
        ("pin", 5, None)]


def test_a_steering_mistake_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "verbs.db"
    build_store(db, runs=1, experiments=20).close()
    for args, said in ((["veto", "nope"], "no run named 'nope'"),
                       (["pin", "classifier-1", "999"], "no experiment #999"),
                       (["--db", str(tmp_path / "missing.db"), "stop", "x"], "no such store")):
        done = run_cli("--db", str(db), *args)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
