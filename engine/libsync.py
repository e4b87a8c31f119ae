"""Candidate copies of one library run's workspace: every file but the other runs' files,
with the library's folders read once rather than on every round (engine/library.py)."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

#: A folder's listing read this soon after its mtime is read again next time.
RACY_S = 1.0


class PrunedCopies:
    """sync_tree (engine/workspace.py) for a LibraryWorkspace, over cached listings."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        #: folder → (its mtime, when read, what a candidate copy takes from it).
        self.listings: dict[str, tuple[int, int, list[tuple[str, str, str]]]] = {}

    def listing(self, src: str) -> list[tuple[str, str, str]]:
        """(name, path, kind) of what a candidate copy takes from the folder `src`: the
        other runs' files and folders left out. A library's folder of 200 skills is read
        once, not on every round of every run (that made a round's cost grow with the
        number of runs); a listing is used again while the folder's mtime is the one it
        had, and was read more than RACY_S after that mtime (a change within the same
        clock tick cannot hide behind an unchanged mtime: git's "racy" rule)."""
        st = os.stat(src)
        cached = self.listings.get(src)
        if cached is not None and cached[0] == st.st_mtime_ns:
            return cached[2]
        out = []
        for e in os.scandir(src):
            if (self.ws.pruned and e.path in self.ws.pruned) or self.ws._ignored(e.name):
                continue
            kind = ("link" if e.is_symlink() else "dir" if e.is_dir(follow_symlinks=False)
                    else "file")
            out.append((e.name, e.path, kind))
        read_at = time.time_ns()
        if read_at - st.st_mtime_ns > RACY_S * 1e9:
            self.listings[src] = (st.st_mtime_ns, read_at, out)
        return out

    def sync(self, src: str, dest: str, skip: set[str]) -> None:
        """sync_tree (engine/workspace.py) over the cached listings: `dest` mirrors `src`
        minus the other runs' files; only files whose size or time differ are copied."""
        wanted = {name: (path, kind) for name, path, kind in self.listing(src)}
        present = set()  # folders already there: no makedirs (a stat and an error) each
        for entry in os.scandir(dest):
            source = wanted.get(entry.name)
            kind = ("link" if entry.is_symlink() else "dir"
                    if entry.is_dir(follow_symlinks=False) else "file")
            if source is None or source[1] != kind:
                if kind == "dir":
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            elif kind == "dir":
                present.add(entry.name)
        for name, (path, kind) in wanted.items():
            target = f"{dest}/{name}"
            if kind == "link":
                if not os.path.islink(target) or os.readlink(target) != os.readlink(path):
                    if os.path.lexists(target):
                        os.unlink(target)
                    os.symlink(os.readlink(path), target)
            elif kind == "dir":
                if name not in present:
                    os.makedirs(target, exist_ok=True)
                self.sync(path, target, skip)
            elif target not in skip:
                try:
                    stat = os.stat(path)
                except FileNotFoundError:  # gone since the listing was read
                    self.listings.pop(src, None)
                    continue
                try:
                    have = os.stat(target)
                except FileNotFoundError:
                    have = None
                if (have is None or have.st_size != stat.st_size
                        or have.st_mtime_ns != stat.st_mtime_ns):
                    shutil.copy2(path, target)
