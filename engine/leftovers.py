"""What an engine leaves if it is killed: evaluations still running and scratch folders.

Each engine process marks its environment with AUTORESEARCH_ENGINE=<its own id>, so every
process an evaluation starts (children, grandchildren, whatever process group they moved to)
carries the mark; its scratch folders (the worker slots' candidate copies) live under one
folder of its own. Two things clean up after an engine that died without stopping:

* a watchdog process (engine/watchdog.py, one per engine) waits on a pipe from the engine;
  when the pipe closes (the engine exited, however) it kills every marked process and
  removes the scratch folder. Evaluations die with the engine, as far as the OS allows;
* a record beside each store it hosts runs of (`.<store>.locks/engines/<pid>.json`: pid,
  start time, mark, scratch folder). An engine starting on that store finds the records of
  engines no longer alive (the pid is gone or belongs to a later process) and does the
  watchdog's work, in case the watchdog was killed too.

Processes that clear their environment (`env -i`) escape the mark; on systems without /proc
only the scratch folders are cleaned.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

MARK = "AUTORESEARCH_ENGINE"

_this: dict[str, str] | None = None
_watchdog: subprocess.Popen[bytes] | None = None


def process_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), None when it is not running."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields and fields[0] == b"Z":
        return None
    return fields[19].decode() if len(fields) > 19 else "?"


def alive(pid: int, start: str | None) -> bool:
    """Is this the same process that wrote the record (not a later one with its pid)?"""
    if os.path.isdir("/proc"):
        now = process_start(pid)
        return now is not None and (start in (None, "?") or now in ("?", start))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_engine() -> dict[str, str]:
    """This process's mark and scratch folder (made on first use, with the watchdog)."""
    global _this
    if _this is None:
        pid = os.getpid()
        mark = f"{pid}-{process_start(pid) or '?'}-{uuid.uuid4().hex[:8]}"
        scratch = tempfile.mkdtemp(prefix=f"autoresearch-{pid}-")
        _this = {"pid": str(pid), "start": process_start(pid) or "?", "mark": mark,
                 "scratch": scratch}
        os.environ[MARK] = mark  # inherited by every evaluation from now on
        _start_watchdog(mark, scratch)
        atexit.register(shutil.rmtree, scratch, True)
    return _this


def scratch_dir() -> Path:
    """Where this engine's candidate copies go."""
    return Path(this_engine()["scratch"])


def records_dir(db: Path) -> Path:
    from engine.locks import sidecar_dir

    return sidecar_dir(db) / "engines"


def claim(db: Path) -> list[str]:
    """Clean up after dead engines of this store, then record this one; returns notes."""
    notes = clean_dead(db)
    me = this_engine()
    folder = records_dir(db)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{me['pid']}.json"
        path.write_text(json.dumps(me), encoding="utf-8")
    except OSError:
        return notes  # a full or read-only disk: the watchdog still cleans up
    if _watchdog is not None and _watchdog.stdin is not None:
        try:
            _watchdog.stdin.write(f"{path}\n".encode())
            _watchdog.stdin.flush()
        except OSError:
            pass
    atexit.register(_forget, path)
    return notes


def clean_dead(db: Path) -> list[str]:
    """Kill what engines that died left running and remove their scratch folders."""
    notes = []
    try:
        paths = sorted(records_dir(db).glob("*.json"))
    except OSError:
        return notes
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            pid = int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if pid == os.getpid() or alive(pid, record.get("start")):
            continue
        killed = kill_marked(str(record.get("mark") or ""))
        scratch = record.get("scratch")
        removed = bool(scratch) and os.path.isdir(scratch)
        if removed:
            shutil.rmtree(scratch, ignore_errors=True)
        path.unlink(missing_ok=True)
        if killed or removed:
            notes.append(f"cleaned up after engine {pid}, which stopped without cleaning up: "
                         f"killed {killed} process(es) of its evaluations"
                         + (", removed its scratch folder" if removed else ""))
    return notes


def kill_marked(mark: str) -> int:
    """SIGKILL every process (and its process group) whose environment carries this mark."""
    if not mark or not os.path.isdir("/proc"):
        return 0
    needle = f"{MARK}={mark}\0".encode()
    me, my_group = os.getpid(), os.getpgrp()
    killed = 0
    for _ in range(3):  # a dying group may have spawned more meanwhile
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as handle:
                    environ = handle.read()
            except OSError:
                continue
            if needle in environ:
                found.append(int(name))
        if not found:
            break
        for pid in found:
            try:
                group = os.getpgid(pid)
                if group != my_group:
                    os.killpg(group, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
    return killed


def _forget(path: Path) -> None:
    path.unlink(missing_ok=True)


def _start_watchdog(mark: str, scratch: str) -> None:
    """One watchdog per engine, in a session of its own (a terminal's Ctrl-C or hangup must
    not take it with the engine), without the mark (it must not kill itself)."""
    global _watchdog
    env = {k: v for k, v in os.environ.items() if k != MARK}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        _watchdog = subprocess.Popen(
            [sys.executable, "-m", "engine.watchdog", mark, scratch], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=root,
            start_new_session=True)
    except OSError:
        _watchdog = None
