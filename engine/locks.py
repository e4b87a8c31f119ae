"""Which engine may work on what: file locks that the OS releases even on SIGKILL.

* A run is hosted by one engine at a time: its lock lives beside the store, keyed on the
  store file itself (its real path), not on the --db path as typed, so a symlink or another
  relative path to the same store finds the same lock (engine/host.py takes it).
* A workspace is worked on by one engine at a time: each target file, and a git workspace's
  repository (one checkout, one branch at a time), has a lock in a folder of the machine's
  temporary directory, holding the store and run that took it. A second engine with another
  store is refused with a message that names the first one's store. Runs of one store in one
  engine may share a workspace (as before).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import weakref
from pathlib import Path
from typing import IO

from engine.model import UserError

#: Workspace locks this process holds: key -> (store's real path, run name, the lock; a lock
#: dropped without release() holds nothing).
_held: dict[str, tuple[str, str, weakref.ref[WorkspaceLock]]] = {}


def real_store(db: Path) -> Path:
    """The store file itself, whatever path (symlink, relative, ..) names it."""
    return Path(os.path.realpath(db))


def sidecar_dir(db: Path) -> Path:
    """The folder beside the store for its locks, engine records and disk reserve."""
    real = real_store(db)
    return real.parent / f".{real.name}.locks"


def _lock_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"autoresearch-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def workspace_keys(root: Path, targets: list[str]) -> list[str]:
    """What two engines must not share: each target file, and a git repository."""
    keys = [f"file:{os.path.realpath(root / rel)}" for rel in targets]
    git = root / ".git"
    if git.exists():
        keys.append(f"git:{os.path.realpath(git)}")
    return sorted(set(keys))


class WorkspaceLock:
    """The locks of one run's workspace, held until release()."""

    def __init__(self, handles: list[tuple[str, IO[str]]]) -> None:
        self.handles = handles

    def release(self) -> None:
        for key, handle in self.handles:
            _held.pop(key, None)
            handle.close()
        self.handles = []


def take_workspace(root: Path, targets: list[str], db: Path, run_name: str) -> WorkspaceLock:
    """Hold the workspace for this store's run, or refuse naming the engine that has it."""
    store = str(real_store(db))
    taken: list[tuple[str, IO[str]]] = []
    lock = WorkspaceLock(taken)
    try:
        for key in workspace_keys(root, targets):
            mine = _held.get(key)
            if mine is not None and mine[2]() is None:
                del _held[key]
                mine = None
            if mine is not None:
                if mine[0] == store:
                    continue  # another run of this engine's store: as before
                _refuse(root, key, {"store": mine[0], "run": mine[1], "pid": os.getpid()})
            name = hashlib.sha256(key.encode()).hexdigest()[:24] + ".lock"
            handle = open(_lock_folder() / name, "a+", encoding="utf-8")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                try:
                    holder = json.loads(handle.read() or "{}")
                except ValueError:
                    holder = {}
                handle.close()
                _refuse(root, key, holder)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"store": store, "run": run_name, "pid": os.getpid(),
                                     "key": key}))
            handle.flush()
            taken.append((key, handle))
            _held[key] = (store, run_name, weakref.ref(lock))
    except BaseException:
        lock.release()
        raise
    return lock


def _refuse(root: Path, key: str, holder: dict) -> None:
    what = "its git repository" if key.startswith("git:") else key.removeprefix("file:")
    store = holder.get("store") or "an unknown store"
    run = f" (run {holder['run']!r}, pid {holder.get('pid', '?')})" if holder.get("run") else ""
    raise UserError(f"{root}: {what} is in use by another engine with store {store}{run}; "
                    f"stop it, or run with --db {store}")
