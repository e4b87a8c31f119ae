"""Text from outside (descriptions, reasons, output) reaches a terminal shown, never obeyed:
headless lines, `status`, and `export` to a terminal; into a pipe an export is the data."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from engine.headless import experiment_line
from engine.store import Store
from tests.conftest import REPO, cli_env, run_cli

EVIL = "\x1b]0;pwned\x07x \x1b[2J\u2028next\rover"


def evil_store(tmp_path):
    db = tmp_path / "a.db"
    store = Store(db)
    run_id = store.create_run("toy", spec_path="", spec_json="", workspace=str(tmp_path),
                              direction="minimize", target=None)
    exp = store.start_experiment(run_id, round=1, kind="candidate", parent=None,
                                 description=EVIL)
    store.finish_experiment(exp, verdict="reverted", reason=EVIL, score=2.0)
    store.update_run(run_id, status="done", stop_reason=EVIL)
    store.close()
    return db


def test_a_headless_line_shows_control_characters():
    line = experiment_line({"round": 3, "verdict": "reverted", "score": 2.0, "delta": 1.0,
                            "description": EVIL, "reason": EVIL})
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line
    assert "\u2028" not in line and line.isprintable()
    assert "␛]0;pwned␇x ␛[2J" in line


def test_status_shows_control_characters(tmp_path):
    out = run_cli("--db", str(evil_store(tmp_path)), "status").stdout
    assert out.count("\n") == 1 and out.rstrip("\n").isprintable()
    assert "␛[2J" in out


def _on_a_terminal(*args: str) -> str:
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tui", *args], cwd=REPO, env=cli_env(),
                            stdout=child, stderr=subprocess.PIPE)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=30)
    os.close(main)
    return b"".join(chunks).decode("utf-8")


def test_export_to_a_terminal_shows_control_characters_and_into_a_pipe_keeps_them(tmp_path):
    db = evil_store(tmp_path)
    for fmt in ("md", "tsv"):
        shown = _on_a_terminal("--db", str(db), "export", "toy", "--format", fmt)
        assert "\x1b" not in shown and "\x07" not in shown, fmt
        assert "␛]0;pwned␇x" in shown
    piped = run_cli("--db", str(db), "export", "toy", "--format", "md").stdout
    assert "\x1b]0;pwned\x07x" in piped  # the data as recorded
