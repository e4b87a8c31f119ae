"""Crash safety: SIGKILL the headless engine at random moments, restart it, and check that
nothing is lost, nothing is counted twice, and the target and branch hold the best version."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine.storage as storage_module
from engine.host import Host
from engine.model import ADVANCING
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import REPO, cli_env, metric_spec, run_cli, write
from tests.test_loop import git, make_repo

KILLS = 12


def slow_scoring(ws: Path) -> None:
    write(ws / "score.py", """
        import random, time, yaml
        time.sleep(random.uniform(0.02, 0.15))
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}")
    """)


def fast_scoring(ws: Path) -> None:
    """A millisecond evaluation: records are written while the next one runs
    (engine/records.py), so a kill often lands between an outcome decided and its commit."""
    write(ws / "fast.sh", """
        awk '/^x:/ {x = $2} /^y:/ {y = $2}
             END {d = x - 7; if (d < 0) d = -d; print "METRIC loss=" (d + (y == "b" ? 0 : 3))}' params.yaml
    """)


@pytest.mark.parametrize("speed", ["slow", "fast"])
def test_sigkill_at_random_moments_loses_nothing_and_counts_nothing_twice(
        tmp_path, params_workspace, speed):
    slow_scoring(params_workspace)
    fast_scoring(params_workspace)
    write(params_workspace / "params.yaml", "x: 20\ny: a\n")
    make_repo(params_workspace)
    # fast: every kill lands mid-run (checked below), and the last engine has fewer rounds
    # left to run than 3,000 gave it (two minutes of the suite on a loaded machine)
    rounds = 40 if speed == "slow" else 1200
    spec = metric_spec(params_workspace, stop=f"max_rounds: {rounds}, max_failures: null",
                       **({"command": "sh fast.sh"} if speed == "fast" else {}))
    # A space the params mutator cannot use up in 1,200 rounds (it stops once every value
    # combination was tried: 63 of them in the default spec).
    spec.write_text(spec.read_text().replace("max: 20}", "max: 1000000}"))
    db = tmp_path / "a.db"
    command = [sys.executable, "-m", "tui", "--db", str(db), "run", str(spec), "--headless"]
    rng = random.Random(1234)
    for _ in range(KILLS):
        proc = subprocess.Popen(command, env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 1.2) if speed == "slow" else rng.uniform(0.5, 0.9))
        assert speed == "slow" or proc.poll() is None, "the run ended before a kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    final = subprocess.run(command, env=cli_env(), cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr

    store = Store(db)
    assert store.integrity_ok()
    run = store.get_run("toy")
    rows = store.experiments(run["id"])
    assert run["status"] == "done" and run["rounds"] == rounds
    assert not [r for r in rows if r["verdict"] == "running"]
    assert all(r["score"] is not None for r in rows if r["verdict"] in ("kept", "reverted"))
    # Every round was recorded once, apart from experiments a kill interrupted.
    finished = [r["round"] for r in rows if r["verdict"] != "interrupted"]
    assert sorted(finished) == sorted(set(finished))
    assert set(finished) | {r["round"] for r in rows} == set(range(0, rounds + 1))
    # The target holds the best version, and the branch has one commit per advance, in order.
    best = store.experiment(run["best_experiment"])
    assert (params_workspace / "params.yaml").read_text() == store.version_files(best["id"])["params.yaml"]
    advances = [r for r in rows if r["verdict"] in ADVANCING]
    log = git(params_workspace, "log", "--format=%(trailers:key=Experiment,valueonly)",
              "autoresearch/toy").split()
    assert list(reversed(log)) == [str(r["id"]) for r in advances]
    assert all(r["git_commit"] for r in advances)
    assert git(params_workspace, "status", "--porcelain", "params.yaml") == ""


BREAKERS = {
    # SQLite answers "database or disk is full" once the file may not grow.
    "full disk": ("PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 1073741823",
                  "database or disk is full"),
    # SQLite answers "attempt to write a readonly database" (as for a read-only file; root
    # ignores file modes, so the test uses SQLite's own switch).
    "read-only store": ("PRAGMA query_only = ON", "PRAGMA query_only = OFF", "readonly database"),
}


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
async def test_unwritable_store_pauses_the_run_and_it_resumes_when_writes_work(
        tmp_path, params_workspace, monkeypatch, breaker):
    break_sql, mend_sql, message = BREAKERS[breaker]
    write(params_workspace / "score.py", """
        import yaml
        print("log line " * 1000)  # every experiment needs fresh pages for its log tail
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}")
    """)
    monkeypatch.setattr(storage_module, "PROBE_S", 0.2)
    spec = metric_spec(params_workspace, stop="max_rounds: 12")
    store = Store(tmp_path / "a.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    task = asyncio.create_task(host.run_until_done())
    while not store.get_run("toy")["best_experiment"]:
        await asyncio.sleep(0.05)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(break_sql.format(pages=pages))
    deadline = time.monotonic() + 20
    while loop.alert is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert loop.alert and message in loop.alert and "paused" in loop.alert
    await asyncio.sleep(0.6)
    assert not task.done()  # paused, not crashed
    store.db.execute(mend_sql)
    await asyncio.wait_for(task, 60)
    run = store.get_run("toy")
    assert run["status"] == "done" and run["rounds"] == 12
    assert loop.alert is None
    rows = store.experiments(run["id"])
    assert not [r for r in rows if r["verdict"] == "running"]
    assert any("storage works again" in e["line"] for e in store.events(run["id"], limit=1000))


def test_a_store_that_cannot_be_opened_is_a_one_line_message(tmp_path, params_workspace):
    result = run_cli("--db", str(tmp_path / "no" / "such" / "dir" / "a.db"), "run",
                     str(metric_spec(params_workspace)), "--headless")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot open the store" in result.stderr
