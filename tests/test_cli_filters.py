"""Every command is a Unix filter and every stop signal is a clean stop: real subprocesses
writing into pipes whose reader is gone, and signals sent while the CLI is still starting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, metric_spec, run_cli, write


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store holding one finished run, and its spec."""
    root = tmp_path_factory.mktemp("filters")
    ws = root / "ws"
    write(ws / "params.yaml", "x: 1\ny: a\n")
    write(ws / "score.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7)}")
    """)
    spec = metric_spec(ws, stop="max_rounds: 3")
    db = root / "a.db"
    assert run_cli("--db", str(db), "run", str(spec), "--headless").returncode == 0
    return db, spec


def into_closed_pipe(*args: str, stream: str = "stdout", timeout: float = 60
                     ) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout (or stderr, or both) a pipe whose reader has already gone."""
    read, write_end = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tui", *args], cwd=REPO, env=cli_env(), text=True,
            timeout=timeout,
            stdout=write_end if stream in ("stdout", "both") else subprocess.PIPE,
            stderr=write_end if stream in ("stderr", "both") else subprocess.PIPE)
    finally:
        os.close(write_end)


COMMANDS = [
    ("status",), ("status", "--json"), ("export", "toy"), ("export", "toy", "--format", "tsv"),
    ("export", "toy", "--format", "jsonl"), ("export", "toy", "--format", "playbook"),
    ("--help",), ("check", "SPEC"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_every_command_into_a_closed_pipe_exits_quietly(finished, args):
    db, spec = finished
    args = tuple(str(spec) if a == "SPEC" else a for a in args)
    result = into_closed_pipe("--db", str(db), *args)
    assert result.returncode == (0 if args == ("--help",) else 141), result.stderr
    # No traceback, no "Exception ignored" at exit: at most a note of the command's own.
    assert all(line.startswith("note: ") for line in result.stderr.splitlines()), result.stderr


def test_errors_into_a_closed_stderr_exit_quietly(tmp_path):
    result = into_closed_pipe("check", str(tmp_path / "missing.yaml"), stream="both")
    assert result.returncode == 141


def test_headless_run_into_a_closed_pipe_stops_cleanly_after_recording(tmp_path,
                                                                       params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 500")
    db = tmp_path / "a.db"
    started = time.monotonic()
    result = into_closed_pipe("--db", str(db), "run", str(spec), "--headless")
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    assert time.monotonic() - started < 30  # it stopped, it did not run 500 rounds
    status = json.loads(run_cli("--db", str(db), "status", "--json").stdout)[0]
    assert status["status"] == "stopped" and status["rounds"] < 500
    assert "running" not in status["verdicts"]


def test_headless_demo_into_a_closed_pipe_exits_quietly(tmp_path):
    result = into_closed_pipe("--db", str(tmp_path / "d.db"), "demo", "--headless",
                              "--workdir", str(tmp_path / "w"))
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr


def _spawn(db: Path, spec: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "run", str(spec),
                             "--headless"], cwd=REPO, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _catches(pid: int, sig: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stop_signal_right_after_spawn_is_a_clean_stop(tmp_path, params_workspace, sig):
    # Catching is the CLI's first act (right after the interpreter's own start): signal at
    # the first moment it is in place, while the CLI's and the engine's modules import, then
    # while the store opens and the run starts.
    spec = metric_spec(params_workspace, stop="max_rounds: 500")
    for n, delay in enumerate([0, 0.2]):
        db = tmp_path / f"{n}.db"
        proc = _spawn(db, spec)
        deadline = time.monotonic() + 10
        while not _catches(proc.pid, signal.SIGTERM) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (delay, err)
        assert "stopping after recording" in err and "Traceback" not in err
        assert "stopped" in out
        status = json.loads(run_cli("--db", str(db), "status", "--json").stdout)[0]
        assert status["status"] == "stopped", delay
        assert "running" not in status["verdicts"]


def test_after_ctrl_c_no_new_experiment_starts(tmp_path, params_workspace):
    # A slow mutator (a coding agent thinking for a second): Ctrl-C lands while it proposes.
    write(tmp_path / "agent.py", """
        import time, random
        time.sleep(1.0)
        open("params.yaml", "w").write(f"x: {random.randint(0, 20)}\\ny: a\\n")
        print("DESCRIPTION: random x")
    """)
    spec = write(tmp_path / "agent.yaml", f"""
        name: agent
        target: {{workspace: ws, files: [params.yaml]}}
        mutator: {{kind: agent, command: "{sys.executable} {tmp_path / 'agent.py'}"}}
        evaluate: {{kind: metric, command: python score.py, metric: loss}}
        stop: {{max_rounds: 50}}
    """)
    db = tmp_path / "a.db"
    proc = _spawn(db, spec)
    assert proc.stdout is not None
    assert "baseline" in proc.stdout.readline()
    time.sleep(0.4)  # the agent is proposing round 1
    asked = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT started, verdict, worker FROM experiments").fetchall()
    # The proposal Ctrl-C cut short is recorded (with what it cost) as interrupted, and
    # nothing was evaluated after the signal: no experiment was started on a worker.
    after = [r for r in rows if r[0] >= asked]
    assert rows and all(verdict == "interrupted" and not worker for _, verdict, worker in after), (
        rows, out, err)
    assert len(after) <= 1


def test_headless_shows_steering_and_that_a_long_evaluation_is_alive(tmp_path,
                                                                     params_workspace):
    from engine.store import Store

    write(params_workspace / "score.py", """
        import sys, time
        print("warming up \\x1b[2J the cache", flush=True)
        time.sleep(7)
        print("METRIC loss=3")
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 1")
    db = tmp_path / "a.db"
    proc = _spawn(db, spec)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while not db.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    store = Store(db)
    while store.get_run("toy") is None and time.monotonic() < deadline:
        time.sleep(0.05)  # (the store is made a moment before the run's row)
    time.sleep(1)  # the baseline is evaluating
    run_id = store.get_run("toy")["id"]
    store.add_command(run_id, "pause")
    store.add_command(run_id, "guide", argument="try x near 7\u2028(line two)")
    store.add_command(run_id, "resume")
    store.close()
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    steering = [line for line in lines if line.startswith("steering: ")]
    assert steering[0] == "steering: pause → paused", lines
    assert steering[1].startswith("steering: guide 'try x near 7\\u2028(line two)' → ")
    assert steering[2] == "steering: resume → resumed"
    alive = [line for line in lines if "evaluating for" in line]
    assert alive and alive[0].startswith("… baseline evaluating for ")
    assert alive[0].endswith("· warming up ␛[2J the cache")  # its last line, shown not obeyed
    assert len(alive) <= 2  # at most one every few seconds
    assert "\x1b" not in out
