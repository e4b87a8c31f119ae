"""A full disk under a fast run with no keeps: the run pauses at once with one line, nothing
evaluated is lost, round numbers run on without a gap, Ctrl-C records the stop, and the run
goes on by itself when space comes back. The store lives on a real tmpfs that fills up."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import Store
from tests.conftest import REPO, cli_env, metric_spec, write
from tests.fulldisk import can_mount, full_disk

pytestmark = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root")


def _wait(what, timeout: float = 20.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _rows(db: Path) -> list[dict]:
    if not db.exists():
        return []
    store = Store(db, readonly=True)
    try:
        run = store.get_run("toy")
        return store.experiments(run["id"]) if run else []
    except sqlite3.OperationalError:  # the engine is still making the schema
        return []
    finally:
        store.close()


def test_full_disk_pauses_at_once_keeps_every_outcome_and_resumes(tmp_path, params_workspace):
    counter = tmp_path / "evaluations"
    write(params_workspace / "score.sh", f"""
        echo x >> {counter}
        echo "METRIC loss=1"
    """)
    write(params_workspace / "params.yaml", "x: 5.0\n")
    spec = metric_spec(params_workspace, stop="max_rounds: 100000, max_failures: null",
                       command="sh score.sh")
    text = spec.read_text().replace("x: {type: int, min: 0, max: 20}",
                                    "x: {type: float, min: 0, max: 1000}")
    spec.write_text(text.replace("    y: {type: choice, values: [a, b, c]}\n", ""))
    with full_disk(tmp_path / "disk") as disk:
        db = disk.mount / "a.db"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui", "--db", str(db), "run", str(spec), "--headless"],
            env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait(lambda: len(_rows(db)) > 30)
            disk.fill()
            # Paused at once: evaluations stop within a moment (the one in flight finishes).
            time.sleep(1.5)
            paused_at = _lines(counter)
            time.sleep(1.0)
            assert _lines(counter) - paused_at <= 1, "evaluations went on with a full disk"
            status = Store(db, readonly=True)
            assert status.get_run("toy")["status"] == "paused"  # (the reserve made room for it)
            status.close()
            disk.free()
            _wait(lambda: _lines(counter) > paused_at + 30, timeout=30)
            disk.fill()
            time.sleep(1.5)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        disk.free()
        assert "Traceback" not in stderr, stderr[-3000:]
        alerts = [line for line in stderr.splitlines() if "cannot write" in line]
        assert len(alerts) == 2, stderr[-3000:]  # one line per time the disk filled
        store = Store(db)
        run = store.get_run("toy")
        rows = store.experiments(run["id"])
        assert run["status"] == "stopped"
        assert not [r for r in rows if r["verdict"] in ("running", "interrupted")]
        # Every evaluation that ran is recorded, once, and rounds run on without a gap.
        assert len(rows) == _lines(counter)
        rounds = [r["round"] for r in rows]
        assert rounds == list(range(len(rows)))
        store.close()
