"""The workspace: where the target files live, isolated candidate copies, and history.

The target files on disk only ever hold the best version so far; each candidate is staged
in its own copy. In a git repository the run works on branch `autoresearch/<run>` and every
kept mutation is a commit whose message is the mutation's description.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from engine.leftovers import scratch_dir
from engine.linediff import changed_runs
from engine.model import UserError

#: Lines of context around a change in a diff (difflib's default).
DIFF_CONTEXT = 3
GIT_IDENTITY = ["-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost"]


class PathRefused(Exception):
    """A mutation tried to touch a file it may not: the experiment is invalid."""


def atomic_write(path: Path, content: str) -> None:
    """Write through a temporary file and rename, so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def overwrite(path: Path, content: str) -> None:
    """Write a candidate file in place (the slot folder's copy, never a target on disk).

    Opening with O_TRUNC frees the file's blocks, which costs ~0.2 ms on an ext4 mounted
    with `discard` (more than the rest of a round); writing over the old bytes and cutting
    the length afterwards costs ~10 us. O_NOFOLLOW: an evaluation that swapped the file for
    a symlink must not make us write through it, so such a file is replaced instead.
    """
    data = content.encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:  # a symlink (ELOOP) or something else in the way: start afresh
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], written)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def unified_diff(before: dict[str, str], after: dict[str, str]) -> str:
    """A unified diff of the files that differ between two versions."""
    chunks = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, ""), after.get(path, "")
        if old != new:
            a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
            chunks.extend(_changed_in_place(a, b, path) or difflib.unified_diff(
                a, b, fromfile=f"a/{path}", tofile=f"b/{path}"))
    text = "".join(chunks)
    return text if text.endswith("\n") or not text else text + "\n"


def _changed_in_place(a: list[str], b: list[str], path: str) -> list[str] | None:
    """The diff of a file whose lines changed in place (parameters' values), written
    directly: difflib's matcher is most of the cost of a fast round's diff. The same hunks
    difflib writes (changes at most 2 × DIFF_CONTEXT lines apart share one), when the changed
    lines do not also occur elsewhere; otherwise difflib may align the repeats differently,
    and these hunks are as valid. None when lines were added or removed."""
    runs = changed_runs(a, b)
    if not runs:
        return None
    hunks = [[runs[0]]]
    for run in runs[1:]:
        if run[0] - hunks[-1][-1][1] <= 2 * DIFF_CONTEXT:
            hunks[-1].append(run)
        else:
            hunks.append([run])
    out = [f"--- a/{path}\n", f"+++ b/{path}\n"]
    for hunk in hunks:
        lo, hi = max(0, hunk[0][0] - DIFF_CONTEXT), min(len(a), hunk[-1][1] + DIFF_CONTEXT)
        span = f"{lo + 1}" if hi - lo == 1 else f"{lo + 1},{hi - lo}"
        out.append(f"@@ -{span} +{span} @@\n")
        at = lo
        for begin, stop in hunk:
            out += [" " + line for line in a[at:begin]]
            out += ["-" + line for line in a[begin:stop]]
            out += ["+" + line for line in b[begin:stop]]
            at = stop
        out += [" " + line for line in a[at:hi]]
    return out


def sync_tree(src: Path, dest: Path, ignored: Callable[[str], bool],
              skip: set[str] = frozenset(),  # type: ignore[assignment]
              pruned: frozenset[str] = frozenset()) -> None:
    """Make `dest` mirror `src` (minus ignored names, and source paths in `pruned`: other
    library runs' files), copying only files whose size or modification time differ; extra
    files in `dest` are removed; paths in `skip` are left for the caller to write."""
    wanted = {e.name: e for e in os.scandir(src)  # (the set first: most are other runs')
              if not (pruned and e.path in pruned) and not ignored(e.name)}
    for entry in os.scandir(dest):
        source = wanted.get(entry.name)
        same_kind = source is not None and (
            source.is_symlink() == entry.is_symlink()
            and source.is_dir(follow_symlinks=False) == entry.is_dir(follow_symlinks=False))
        if not same_kind:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    for name, entry in wanted.items():
        target = os.path.join(dest, name)
        if entry.is_symlink():
            if not os.path.islink(target) or os.readlink(target) != os.readlink(entry.path):
                if os.path.lexists(target):
                    os.unlink(target)
                os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir():
            os.makedirs(target, exist_ok=True)
            sync_tree(Path(entry.path), Path(target), ignored, skip, pruned)
        elif target in skip:
            continue
        else:
            have = os.stat(target) if os.path.exists(target) else None
            stat = entry.stat()
            if have is None or have.st_size != stat.st_size or have.st_mtime_ns != stat.st_mtime_ns:
                shutil.copy2(entry.path, target)


class Workspace:
    """One run's view of its workspace folder."""

    def __init__(self, root: Path, targets: list[str], protected: list[str], ignore: list[str],
                 run_name: str, spec_path: Path | None = None) -> None:
        self.root = root.resolve()
        self.targets = list(targets)
        self.protected = set(protected)
        self.ignore = list(ignore)
        self.run_name = run_name
        self.spec_path = spec_path.resolve() if spec_path else None
        self.branch = f"autoresearch/{run_name}"
        self.is_git = (self.root / ".git").exists() and shutil.which("git") is not None
        pattern = re.compile("|".join(fnmatch.translate(p) for p in self.ignore) or "(?!)")
        self._ignored: Callable[[str], bool] = lambda name: pattern.match(name) is not None
        #: Target paths confine() accepted (resolving paths is the slow part of the check).
        self._confined: set[str] = set()

    # ------------------------------------------------------------ reading

    def read_targets(self) -> dict[str, str]:
        return {rel: (self.root / rel).read_text(encoding="utf-8") for rel in self.targets}

    # ------------------------------------------------------------ confinement

    def confine(self, files: dict[str, str]) -> None:
        """Refuse any path that is not a target file inside the workspace (invariant 4)."""
        for rel in files:
            if rel in self._confined and not os.path.islink(f"{self.root}/{rel}"):
                continue  # checked before; only a symlink swapped in since could change that
            if os.path.isabs(rel) or ".." in Path(rel).parts:
                raise PathRefused(f"{rel}: paths must be relative and stay inside the workspace")
            full = self.root / rel
            if full.is_symlink() or not full.resolve().is_relative_to(self.root):
                raise PathRefused(f"{rel}: leads outside the workspace")
            if self.spec_path and full.resolve() == self.spec_path:
                raise PathRefused(f"{rel}: the spec itself cannot be changed")
            if rel in self.protected:
                raise PathRefused(f"{rel}: protected file")
            if rel not in self.targets:
                raise PathRefused(f"{rel}: not a target file (targets: {', '.join(self.targets)})")
            self._confined.add(rel)

    # ------------------------------------------------------------ candidates

    def presync(self, into: Path) -> None:
        """Make `into` mirror the workspace except the target files, which stage() with
        `synced=True` then writes (a candidate always carries every target file)."""
        self._sync(into, self.targets)

    def _sync(self, dest: Path, written_after: Iterable[str]) -> None:
        """Mirror the workspace into `dest`, leaving out the files the caller writes next."""
        skip = {os.path.join(dest, rel) for rel in written_after}
        try:
            sync_tree(self.root, dest, self._ignored, skip)
        except FileNotFoundError:
            if os.path.isdir(dest):
                raise
            os.makedirs(dest)  # (asked first, this was a stat a round)
            sync_tree(self.root, dest, self._ignored, skip)

    def stage(self, files: dict[str, str], into: Path | None = None,
              synced: bool = False) -> Path:
        """Make `into` (or a fresh folder) an exact copy of the workspace, then write the
        candidate's files into it.

        A worker slot reuses its folder from one candidate to the next: only what differs
        from the workspace is copied again, and whatever the last evaluation left behind is
        deleted, so every evaluation starts from the same state as a fresh copy.
        """
        dest = into or Path(tempfile.mkdtemp(prefix=f"ar-{self.run_name}-", dir=scratch_dir()))
        if not synced:
            self._sync(dest, files)
        for rel, content in files.items():
            overwrite(dest / rel, content)
        return dest

    # ------------------------------------------------------------ best version

    def write_best(self, files: dict[str, str]) -> None:
        """Make the target files on disk hold this version (atomically, file by file)."""
        for rel, content in files.items():
            path = self.root / rel
            if not path.exists() or path.read_text(encoding="utf-8") != content:
                atomic_write(path, content)

    # ------------------------------------------------------------ git

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *GIT_IDENTITY, *args], cwd=self.root, text=True,
                              capture_output=True, check=check)

    def check_clean(self, allowed: dict[str, str] | None = None) -> None:
        """Refuse to start when a target file has uncommitted changes (they would be lost),
        unless the file holds exactly the `allowed` content (the run's own best version)."""
        if not self.is_git:
            return
        out = self._git("status", "--porcelain", "--", *self.targets).stdout
        dirty = [line[3:] for line in out.splitlines() if line.strip()]
        allowed = allowed or {}
        dirty = [rel for rel in dirty if not (
            rel in allowed and (self.root / rel).is_file()
            and (self.root / rel).read_text(encoding="utf-8") == allowed[rel])]
        if dirty:
            raise UserError(
                f"{self.root}: uncommitted changes to target files ({', '.join(dirty)}); "
                "commit or stash them first")

    def clear_stale_git_locks(self) -> None:
        """Remove lock files a killed `git commit` left (the caller holds the run's lock)."""
        if not self.is_git:
            return
        git_dir = self.root / ".git"
        for lock in [git_dir / "index.lock", git_dir / "HEAD.lock",
                     git_dir / "refs" / "heads" / f"{self.branch}.lock"]:
            lock.unlink(missing_ok=True)

    def prepare_branch(self) -> str | None:
        """Check out the run's branch, creating it from HEAD the first time."""
        if not self.is_git:
            return None
        current = self._git("rev-parse", "--abbrev-ref", "HEAD", check=False).stdout.strip()
        if current == self.branch:
            return self.branch
        exists = self._git("rev-parse", "--verify", "--quiet", self.branch, check=False)
        if exists.returncode == 0:
            self._git("checkout", "--quiet", self.branch)
        else:
            has_head = self._git("rev-parse", "--verify", "--quiet", "HEAD", check=False)
            if has_head.returncode != 0:
                raise UserError(f"{self.root}: the git repository has no commit yet; commit first")
            self._git("checkout", "--quiet", "-b", self.branch)
        return self.branch

    def commit(self, message: str, trailer: str) -> str | None:
        """Commit the target files on the run's branch; returns the commit id.

        Every advance gets its own commit (empty for a baseline that changes nothing), so the
        branch's `Experiment:` trailers list exactly the store's advances, in order.
        """
        if not self.is_git:
            return None
        self._git("add", "--", *self.targets)
        self._git("commit", "--quiet", "--no-verify", "--allow-empty", "-m", message, "-m", trailer)
        return self.head()

    def head(self) -> str | None:
        if not self.is_git:
            return None
        out = self._git("rev-parse", "HEAD", check=False)
        return out.stdout.strip() or None

    def head_message(self) -> str:
        if not self.is_git:
            return ""
        return self._git("log", "-1", "--format=%B", check=False).stdout


class SlotFolders:
    """Two reusable candidate folders per worker slot, used in turn: while an evaluation runs
    in one, the other is brought back to the workspace's state (in the event loop's first
    pause after the command started), so staging the next candidate on that slot is only
    writing its files: the sync is off the path from one evaluation to the next."""

    def __init__(self, workspace: Workspace, run_name: str) -> None:
        self.workspace = workspace
        self.run_name = run_name
        self._pairs: dict[str, list[Path]] = {}
        self._synced: set[Path] = set()
        #: Synced folders with a candidate's files written already (stage_spare).
        self._staged: dict[Path, dict[str, str]] = {}

    def take(self, slot: str) -> tuple[Path, bool, dict[str, str] | None]:
        """The folder for the slot's next candidate, whether it is synced already, and the
        files staged there already if any."""
        pair = self._pairs.get(slot)
        if pair is None:
            prefix = f"ar-{self.run_name}-{slot.replace(':', '-')}-"
            # Under this engine's scratch folder: removed even if the engine is killed.
            pair = self._pairs[slot] = [Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_dir()))
                                        for _ in "ab"]
        pair.reverse()
        folder = pair[1]
        synced = folder in self._synced
        self._synced.discard(folder)  # the evaluation about to run there changes it
        return folder, synced, self._staged.pop(folder, None)

    def sync_spare(self, slot: str) -> None:
        """Sync the slot's other folder now (its evaluation runs in the one just taken)."""
        spare = self._pairs[slot][0]
        self._staged.pop(spare, None)
        try:
            self.workspace.presync(spare)
        except OSError:
            return  # staging there does the whole sync, and reports what goes wrong
        self._synced.add(spare)

    def stage_spare(self, slot: str, files: dict[str, str]) -> None:
        """Write the next candidate's files into the slot's synced spare folder now."""
        spare = self._pairs[slot][0]
        if spare in self._synced:
            try:
                self.workspace.stage(files, spare, synced=True)
            except OSError:
                return  # staged in its turn, which reports what goes wrong
            self._staged[spare] = files

    def discard(self) -> None:
        for pair in self._pairs.values():
            for folder in pair:
                shutil.rmtree(folder, ignore_errors=True)
        self._pairs.clear()
        self._synced.clear()
        self._staged.clear()
