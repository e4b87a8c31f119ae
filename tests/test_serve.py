"""`autoresearch-tui serve DIR` as a user runs it: a real process, a folder of specs that
changes under it, SIGTERM, and a restart that resumes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from engine.serve import heartbeat_path
from engine.store import Store
from tests.conftest import REPO, cli_env, metric_spec, write


def wait_for(check, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def run_rows(db: Path, name: str) -> int:
    if not db.exists():
        return 0
    try:
        store = Store(db, readonly=True)
        try:
            run = store.get_run(name)
            return len(store.experiments(run["id"])) if run else 0
        finally:
            store.close()
    except sqlite3.Error:  # the server is still making the store
        return 0


def test_serve_hosts_new_and_changed_specs_and_resumes(tmp_path: Path, params_workspace: Path):
    folder = params_workspace.parent
    slow = "python score.py; sleep 0.1"
    metric_spec(params_workspace, name="one", stop="max_rounds: 1000", command=f'"{slow}"')
    write(folder / "broken.yaml", "name: broken\ntarget: {files: []}\n")
    db = tmp_path / "store" / "a.db"
    db.parent.mkdir()
    cmd = [sys.executable, "-m", "tui", "--db", str(db), "serve", str(folder), "--poll", "0.3"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: run_rows(db, "one") >= 3)
        beat = json.loads(wait_for(lambda: heartbeat_path(db).exists()
                                   and heartbeat_path(db).read_text()))
        assert beat["pid"] == proc.pid and beat["running"] == 1
        # A new spec joins while the server runs; another workspace, its own run.
        other = tmp_path / "other" / "ws"
        other.mkdir(parents=True)
        for f in ("params.yaml", "score.py"):
            (other / f).write_text((params_workspace / f).read_text())
        spec2 = metric_spec(other, name="two", stop="max_rounds: 4")
        text = spec2.read_text().replace("workspace: ws", f"workspace: {other}")
        (folder / "two.yaml").write_text(text)
        wait_for(lambda: run_rows(db, "two") >= 5
                 and Store(db, readonly=True).get_run("two")["status"] == "done")
        # A changed spec: its run stops after recording and starts again from the new text.
        spec1 = folder / "one.yaml"
        spec1.write_text(spec1.read_text().replace("max_rounds: 1000", "max_rounds: 2000"))
        wait_for(lambda: json.loads(Store(db, readonly=True).get_run("one")["spec_json"])
                 ["stop"]["max_rounds"] == 2000)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "broken.yaml" in err and "Traceback" not in err
    assert err.count("broken.yaml") == 1  # reported once, not on every read of the folder
    assert "changed: its runs restart" in err
    assert "exit status already read" not in err
    assert not heartbeat_path(db).exists()
    store = Store(db, readonly=True)
    one = store.get_run("one")
    assert one["status"] == "stopped" and one["engine_pid"] is None
    assert store.get_run("two")["status"] == "done"
    rounds = [r["round"] for r in store.experiments(one["id"])]
    assert rounds == list(range(len(rounds)))  # the restart resumed the count
    assert sum(r["kind"] == "baseline" for r in store.experiments(one["id"])) == 1
    store.close()
