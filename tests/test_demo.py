"""The offline demo end to end, headless: two real loops improve and stop by their own rules."""

from __future__ import annotations

import json
import subprocess
import time

from engine import demo
from engine.spec import load_spec
from tests.conftest import REPO, run_cli


def test_demo_headless_improves_both_runs_and_leaves_the_project_untouched(tmp_path):
    db = tmp_path / "demo.db"
    started = time.monotonic()
    result = run_cli("--db", str(db), "demo", "--headless", "--workdir", str(tmp_path / "w"),
                     timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 200
    runs = {r["name"]: r for r in json.loads(run_cli("--db", str(db), "status", "--json").stdout)}
    assert set(runs) == {"demo-classifier", "demo-sqlite-load"}
    assert all(r["status"] == "done" for r in runs.values())
    sqlite, classifier = runs["demo-sqlite-load"], runs["demo-classifier"]
    assert sqlite["best"] < sqlite["baseline"] / 3  # several seconds → well under a second
    assert classifier["best"] > classifier["baseline"]
    # The demo works on copies: the project's files are as committed.
    status = subprocess.run(["git", "status", "--porcelain", "checklists"], cwd=REPO,
                            capture_output=True, text=True).stdout
    assert status == ""
    # A second demo starts fresh runs next to the first ones, in a fresh copy.
    specs = demo.prepare(db, tmp_path / "w")
    assert [load_spec(p).name for p in specs] == ["demo-classifier-2", "demo-sqlite-load-2"]
    assert specs[0].parent.name == "demo-2"


def test_a_killed_demo_shows_as_interrupted_and_the_next_demo_resumes_it(tmp_path):
    import signal
    import sys

    from tests.conftest import cli_env

    db, work = tmp_path / "demo.db", tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "demo", "--headless",
                             "--workdir", str(work)], cwd=REPO, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("demo workspaces in")
    # The engine is at work: a round's line (a loaded machine may first print that the
    # baseline is still evaluating).
    assert any("round" in proc.stdout.readline() for _ in range(20))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    status = run_cli("--db", str(db), "status").stdout.splitlines()
    assert len(status) == 2
    for line in status:
        name = line.split()[0]
        assert line.split()[1] == "interrupted", line
        spec = work / "demo-1" / f"{name.removeprefix('demo-')}.yaml"
        assert line.endswith(f"— resume with autoresearch-tui --db {db} run {spec}"), line
    specs, resumed = demo.prepare_or_resume(db, work)
    assert resumed and [p.parent.name for p in specs] == ["demo-1", "demo-1"]
    specs, resumed = demo.prepare_or_resume(db, work, fresh=True)
    assert not resumed and [p.parent.name for p in specs] == ["demo-2", "demo-2"]
