"""What a round of one library run costs must not grow with the number of runs: candidate
copies, the printer's liveness lines, the host's view of which runs changed."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from engine import liveness
from engine.host import Host
from engine.library import LibraryWorkspace
from engine.model import UserError
from engine.store import Store
from tests.conftest import write


def _age(path: Path, seconds: float = 10.0) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_candidate_copies_read_the_library_folder_once(tmp_path: Path, monkeypatch):
    ws = tmp_path / "ws"
    for i in range(40):
        write(ws / "skills" / f"s{i:02d}" / "SKILL.md", f"x: {i}\n")
    write(ws / "skills" / "s00" / "notes.md", "mine\n")
    write(ws / "score.py", "print(1)\n")
    mine = "skills/s00/SKILL.md"
    workspace = LibraryWorkspace(ws, [mine], [], [], "lib-s00")
    workspace.prune([f"skills/s{i:02d}/SKILL.md" for i in range(40)])
    for folder in (ws, ws / "skills", ws / "skills" / "s00"):
        _age(folder)
    reads: list[str] = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: (reads.append(str(p)), scandir(p))[1])
    dest = tmp_path / "copy"
    for _ in range(10):
        workspace.presync(dest)
    assert reads.count(str(ws / "skills")) == 1  # was once a round: 40 entries each time
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) \
        == ["score.py", "skills/s00/notes.md"]  # its own file is written by stage()
    # A file added beside the library's folders reaches the next copy; one removed goes.
    write(ws / "shared.md", "for every run\n")
    (ws / "skills" / "s00" / "notes.md").unlink()
    workspace.presync(dest)
    assert (dest / "shared.md").read_text() == "for every run\n"
    assert not (dest / "skills" / "s00" / "notes.md").exists()
    # A file edited in place (its folder's mtime unchanged) is copied again too.
    (ws / "score.py").write_text("print(2)\n")
    workspace.presync(dest)
    assert (dest / "score.py").read_text() == "print(2)\n"
    # A new run's folder never reaches this run's copies.
    write(ws / "skills" / "s99" / "SKILL.md", "x: 0\n")
    workspace.prune(["skills/s99/SKILL.md"])
    workspace.presync(dest)
    assert not (dest / "skills" / "s99").exists()


def test_a_folder_read_in_the_same_tick_as_its_change_is_read_again(tmp_path: Path):
    """A listing read just after its folder changed is not trusted (the racy-git rule): a
    second change in the same clock tick leaves the mtime as it was."""
    ws = tmp_path / "ws"
    write(ws / "skills" / "a" / "SKILL.md", "x: 1\n")
    workspace = LibraryWorkspace(ws, ["skills/a/SKILL.md"], [], [], "lib-a")
    dest = tmp_path / "copy"
    workspace.presync(dest)
    stamp = os.stat(ws).st_mtime_ns
    write(ws / "late.md", "added in the same tick\n")
    os.utime(ws, ns=(stamp, stamp))  # as if the clock had not moved
    workspace.presync(dest)
    assert (dest / "late.md").exists()


def test_liveness_reads_output_only_of_long_evaluations(tmp_path: Path, monkeypatch):
    store = Store(tmp_path / "a.db")
    run_id = store.create_run("r", spec_path="", spec_json="{}", workspace=str(tmp_path),
                              direction="maximize", target=None)
    now = time.time()
    ids = [store.start_experiment(run_id, round=i, kind="candidate", parent=None, description="d")
           for i in range(1, 31)]
    store.conn.execute("UPDATE experiments SET started = ? WHERE id = ?", [now - 60, ids[0]])
    store.commit()
    reads: list[int] = []
    events = Store.events
    monkeypatch.setattr(Store, "events", lambda self, **kw: (
        reads.append(kw.get("experiment_id")), events(self, **kw))[1])
    items = liveness.running(store, now + 1, after_s=5.0)
    assert [i.experiment_id for i in items] == [ids[0]]
    assert reads == [ids[0]]  # not one query per evaluation in flight, every half second


def test_the_host_lists_the_runs_changed_since_a_listener_looked(tmp_path: Path):
    host = Host(Store(tmp_path / "a.db"))
    for rid in range(1, 51):
        host._run_changed(rid)
    first: dict[int, int] = {}
    assert host.changed_since(first) == list(range(1, 51))
    assert host.changed_since(first) == []
    host._run_changed(7)
    host._run_changed(3)
    host._run_changed(7)
    second: dict[int, int] = {}
    assert host.changed_since(first) == [3, 7]
    assert host.changed_since(second) == [*(r for r in range(1, 51) if r not in (3, 7)), 3, 7]
    assert host.changed_since(first) == host.changed_since(second) == []


async def test_the_poller_flushes_only_runs_with_lines_waiting(tmp_path: Path, monkeypatch):
    """Flushing every hosted run every 0.2 s (a write and a commit each) made the host's
    poll grow with the library; a run's records have their own timer."""
    from engine import host as hosting
    from engine.loop import RunLoop
    from tests.test_library import host_all, make_library

    monkeypatch.setattr(hosting, "COMMAND_POLL_S", 0.02)
    idle: list[int] = []
    flush = RunLoop.flush_events

    def counting(self):
        if not self.ledger.events and not self.stopping and self.stop_reason is None:
            idle.append(self.run_id)
        flush(self)

    monkeypatch.setattr(RunLoop, "flush_events", counting)
    spec = make_library(tmp_path, {f"s{i}": i for i in range(6)}, stop="max_minutes: 0.04")
    store = await host_all(tmp_path / "a.db", spec)
    assert sum(len(store.experiments(r["id"])) for r in store.runs()) > 12
    assert len(idle) <= 6, len(idle)  # was ~6 runs × 120 polls


async def test_the_poller_reads_pending_commands_only_when_there_may_be_new_ones(
        tmp_path: Path, monkeypatch):
    store = Store(tmp_path / "a.db")
    host = Host(store)
    reads: list[int] = []
    pending = Store.pending_commands
    monkeypatch.setattr(Store, "pending_commands",
                        lambda self, ids: (reads.append(1), pending(self, ids))[1])
    for _ in range(5):
        await host.apply_commands()
    assert len(reads) == 1  # five polls, nothing new: one read (was one a poll)
    await store.send_command(None, "guide", argument="shorter")
    await host.apply_commands()
    await host.apply_commands()
    assert len(reads) == 2
    host._hosting += 1  # a run started (or ended): its waiting commands are looked for
    await host.apply_commands()
    assert len(reads) == 3


def test_the_printer_reads_commands_only_after_the_host_applied_one(tmp_path: Path,
                                                                    monkeypatch):
    from engine.headless import HeadlessView

    host = Host(Store(tmp_path / "a.db"))
    lines: list[str] = []
    view = HeadlessView(host, lines.append, lines.append)
    reads: list[int] = []
    applied = liveness.applied_commands
    monkeypatch.setattr(liveness, "applied_commands",
                        lambda *a: (reads.append(1), applied(*a))[1])
    for _ in range(5):
        view.tick()
    assert len(reads) == 1  # (the newest 200 commands were read at every tick)
    host.applied += 1
    view.tick()
    view.tick()
    assert len(reads) == 2


def test_stopping_a_library_host_mid_evaluation_prints_no_asyncio_warnings(tmp_path: Path):
    """SIGTERM while a library's evaluations run: every run records and stops, and nothing
    says `child process pid N exit status already read: will report 255` (the issue saw
    dozens at 200 runs)."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    ws = tmp_path / "ws"
    for i in range(16):
        write(ws / "skills" / f"s{i:02d}" / "SKILL.md", f"x: {i}\n")
    spec = write(ws / "lib.yaml", """
        name: lib
        target: {each: "skills/*/SKILL.md"}
        mutator: {kind: params, seed: 1, params: {x: {type: int, min: 0, max: 20}}}
        evaluate:
          kind: metric
          command: "sleep 0.3; awk '/^x:/{print \\"METRIC loss=\\" ($2-7)*($2-7)}' {file}"
          metric: loss
          direction: minimize
        stop: {max_minutes: 2}
    """)
    db = tmp_path / "a.db"
    proc = subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "run", str(spec),
                             "--headless"], cwd=REPO, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every run past its baseline, rounds in flight
            time.sleep(0.2)
            try:
                store = Store(db, readonly=True)
                counts = [len(store.experiments(r["id"])) for r in store.runs()]
                store.close()
            except (sqlite3.Error, UserError):  # not created yet
                continue
            if len(counts) == 16 and min(counts) >= 2:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "exit status already read" not in err and "Traceback" not in err, err
    store = Store(db, readonly=True)
    assert {r["status"] for r in store.runs()} == {"stopped"}
