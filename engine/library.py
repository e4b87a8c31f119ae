"""A library: one spec over many files. `target: {each: GLOB}` makes one run per matching
file (`skills/landing/SKILL.md` → run `<spec name>-landing`), each with its own best version,
branch and changelog, all sharing the spec's mutator, evaluator and stop rules.

The run's file is its only target: `{file}` in commands (and `$AUTORESEARCH_FILE`) name it,
relative to the workspace; a params mutator without `file:` edits it; an llm producer
without `system_file` uses it. A `checklist.yaml` beside the file replaces the checklist's
items for that run. `LibraryWatcher` polls the glob while the host runs: files added later
join as new runs.

Many runs share one git work tree, so a library run never checks its branch out: its commits
are built with git plumbing on `autoresearch/<run>` (LibraryWorkspace), the work tree's own
branch is left alone.
"""

from __future__ import annotations

import glob as globs
import hashlib
import os
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from engine import cadence
from engine import spec as specs
from engine.libsync import PrunedCopies
from engine.workspace import GIT_IDENTITY, Workspace

#: How often the glob is read again for files added while the host runs.
POLL_S = 3.0
#: The per-file override beside a run's file: the checklist items for that run.
OVERRIDE = "checklist.yaml"
_WILD = re.compile(r"[*?\[]")


#: The last reading of each library glob: every run of a library made at once reads it once.
_READ: dict[tuple[str, str], tuple[float, list[str]]] = {}
READ_TTL_S = 1.0


def check_each(spec: specs.Spec) -> None:
    """A library spec's glob stays inside an existing workspace (file:line on a mistake)."""
    from engine.specyaml import read_yaml

    try:
        _, lines = read_yaml(spec.path.read_text(encoding="utf-8")) if spec.path else (0, {})
    except Exception:  # the spec loaded a moment ago; a line number is all we want
        lines = {}
    where = f"{spec.path}:{lines.get(('target', 'each'), 1)}: target.each"
    if not spec.workspace.is_dir():
        raise specs.SpecError(f"{where}: no such workspace folder: {spec.workspace}")
    pattern = spec.target.each or ""
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise specs.SpecError(f"{where}: {pattern} must stay inside the spec's folder")
    if not _WILD.search(pattern):
        raise specs.SpecError(f"{where}: {pattern} is not a glob (no *, ? or [...]); "
                              "use target.files for fixed files")


def matches(spec: specs.Spec, *, fresh: bool = True) -> list[str]:
    """The files the glob matches, relative to the workspace, sorted (with `fresh=False`,
    a reading up to a second old will do)."""
    key = (str(spec.path), spec.target.each or "")
    if not fresh and key in _READ and time.monotonic() - _READ[key][0] < READ_TTL_S:
        return _READ[key][1]
    found = _glob(spec)
    _READ[key] = (time.monotonic(), found)
    return found


#: (folder, glob hit) → the hit relative to the workspace, or None when it is outside it: a
#: path is resolved once (the watcher reads the glob every few seconds; resolving 200 paths
#: each time was most of its cost). Writes are confined again when they happen.
_RESOLVED: dict[tuple[str, str, str], str | None] = {}


def _glob(spec: specs.Spec) -> list[str]:
    base = spec.path.parent if spec.path else Path.cwd()
    ws = spec.workspace
    found = []
    for hit in globs.glob(spec.target.each or "", root_dir=base, recursive=True):
        key = (str(base), str(ws), hit)
        if key not in _RESOLVED:
            full = (base / hit).resolve()
            _RESOLVED[key] = (full.relative_to(ws).as_posix() if full.is_relative_to(ws)
                              and full != spec.path else None)
        rel = _RESOLVED[key]
        if rel is not None and os.path.isfile(os.path.join(ws, rel)):
            found.append(rel)
    return sorted(set(found))


def run_name(spec: specs.Spec, rel: str) -> str:
    """`<spec name>-<the parts of the path the glob's wildcards matched>`."""
    pattern = Path(spec.target.each or "").parts
    parts = list(Path(rel).parts)
    wild = [i for i, p in enumerate(pattern) if _WILD.search(p)]
    if wild and "**" not in pattern and len(parts) >= len(pattern):
        parts = parts[len(parts) - len(pattern):]  # the glob may start below the workspace
        chosen = [parts[i] for i in wild]
        if wild[-1] == len(pattern) - 1:
            chosen[-1] = Path(chosen[-1]).stem or chosen[-1]
    else:
        chosen = parts[:-1] + [Path(parts[-1]).stem]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(chosen)).strip("-.") or "file"
    name = f"{spec.name}-{slug}"
    if len(name) > 64:  # the store's limit: keep it unique with a short hash of the path
        digest = hashlib.sha1(rel.encode()).hexdigest()[:8]
        name = f"{name[:55]}-{digest}"
    return name


def _subst(command: str | None, rel: str) -> str | None:
    return None if command is None else command.replace("{file}", shlex.quote(rel))


def _items(spec: specs.Spec, rel: str) -> list[specs.Item] | None:
    """The items of the `checklist.yaml` beside the run's file, or None when there is none."""
    path = spec.workspace / Path(rel).parent / OVERRIDE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw = data.get("items") if isinstance(data, dict) else data
        if not isinstance(raw, list) or not raw:
            raise specs.SpecError(f"{path}:1: items: a list of checklist items is expected")
        return [specs.Item.model_validate(item) for item in raw]
    except yaml.YAMLError as exc:
        raise specs.SpecError(f"{path}:1: malformed YAML: {exc}".splitlines()[0]) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise specs.SpecError(f"{path}:1: items.{field}: {err['msg']}") from None


def _evaluate(spec: specs.Spec, rel: str) -> specs.Evaluate:
    ev = spec.evaluate
    if isinstance(ev, specs.ChecklistEval):
        items = _items(spec, rel) or ev.items
        items = [i.model_copy(update={"command": _subst(i.command, rel)}) for i in items]
        produce = ev.produce
        if isinstance(produce, specs.ProduceCommand):
            produce = produce.model_copy(update={"command": _subst(produce.command, rel)})
        elif produce.system_file is None:
            produce = produce.model_copy(update={"system_file": rel})
        return ev.model_copy(update={"items": items, "produce": produce})
    update = {"command": _subst(ev.command, rel)}
    if isinstance(ev, specs.MetricEval):
        update["guard"] = _subst(ev.guard, rel)
    return ev.model_copy(update=update)


def for_file(spec: specs.Spec, rel: str) -> specs.Spec:
    """The run spec for one file of a library spec."""
    mutator = spec.mutator
    if isinstance(mutator, specs.ParamsMutator) and mutator.file is None:
        mutator = mutator.model_copy(update={"file": rel})
    elif isinstance(mutator, specs.AgentMutator):
        mutator = mutator.model_copy(update={"command": _subst(mutator.command, rel)})
    screen = spec.screen
    if screen is not None and screen.command:
        screen = screen.model_copy(update={"command": _subst(screen.command, rel)})
    one = spec.model_copy(update={
        "name": run_name(spec, rel), "mutator": mutator, "evaluate": _evaluate(spec, rel),
        "screen": screen, "target": spec.target.model_copy(update={"files": [rel]})})
    one.path = spec.path
    return one


def expand(spec: specs.Spec) -> list[specs.Spec]:
    """One spec per run: the spec itself, or one per file a library spec's glob matches."""
    if spec.target.each is None:
        return [spec]
    check_each(spec)
    return [for_file(spec, rel) for rel in matches(spec)]


def expand_all(loaded: list[specs.Spec]) -> list[specs.Spec]:
    out = [one for spec in loaded for one in expand(spec)]
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise specs.SpecError(f"two runs would be named {dupes[0]!r}: rename a spec or a file")
    return out


def file_env(spec: specs.Spec) -> dict[str, str]:
    """`AUTORESEARCH_FILE` for a library run's commands (nothing for other runs)."""
    if spec.target.each is None or len(spec.target.files) != 1:
        return {}
    return {"AUTORESEARCH_FILE": spec.target.files[0]}


def workspace_for(spec: specs.Spec) -> Workspace:
    """The run's workspace: a library run's commits go to its branch without a checkout."""
    if spec.target.each is None:
        return Workspace(spec.workspace, spec.target.files, spec.target.protected,
                         spec.target.ignore, spec.name, spec.path)
    ws = LibraryWorkspace(spec.workspace, spec.target.files, spec.target.protected,
                          spec.target.ignore, spec.name, spec.path)
    ws.prune(matches(spec, fresh=False))  # 200 runs made at once: one reading of the glob
    return ws


def others(mine: str, theirs: str) -> str | None:
    """What of another run's file a candidate copy of this run leaves out: the first path
    component where the two differ (its folder, with what lies beside it, or the file)."""
    a, b = mine.split("/"), theirs.split("/")  # posix paths, as matches() gives them
    for i, part in enumerate(b):
        if i >= len(a) or a[i] != part:
            return "/".join(b[: i + 1])
    return None


class LibraryWorkspace(Workspace):
    """A workspace shared by many runs: each run's branch is written with git plumbing
    (a temporary index, commit-tree, update-ref), never checked out."""

    pruned: frozenset[str] = frozenset()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._copies = PrunedCopies(self)  # the library's folders read once (libsync.py)

    def prune(self, files: list[str]) -> None:
        """Leave the other runs' files (and their folders) out of this run's candidate
        copies: they are not this run's, and copying a whole library into every candidate
        makes a round cost grow with the number of runs."""
        mine = self.targets[0]
        cut = {others(mine, rel) for rel in files if rel != mine}
        self.pruned = self.pruned | {f"{self.root}/{c}" for c in cut if c}
        self._copies.listings.clear()

    def _sync(self, dest: Path, written_after) -> None:
        skip = {os.path.join(dest, rel) for rel in written_after}
        try:
            self._copies.sync(str(self.root), str(dest), skip)
        except FileNotFoundError:
            if os.path.isdir(dest):
                raise
            os.makedirs(dest)
            self._copies.sync(str(self.root), str(dest), skip)

    def _ref(self) -> str:
        return f"refs/heads/{self.branch}"

    def prepare_branch(self) -> str | None:
        if not self.is_git:
            return None
        exists = self._git("rev-parse", "--verify", "--quiet", self._ref(), check=False)
        if exists.returncode != 0:
            head = self._git("rev-parse", "--verify", "--quiet", "HEAD", check=False)
            if head.returncode != 0:
                from engine.model import UserError

                raise UserError(f"{self.root}: the git repository has no commit yet; "
                                "commit first")
            self._git("update-ref", self._ref(), head.stdout.strip())
        return self.branch

    def commit(self, message: str, trailer: str) -> str | None:
        if not self.is_git:
            return None
        parent = self._git("rev-parse", self._ref()).stdout.strip()
        fd, index = tempfile.mkstemp(prefix=".ar-index-", dir=self.root / ".git")
        os.close(fd)
        env = {**os.environ, "GIT_INDEX_FILE": index}
        try:
            run = lambda *a, stdin=None: subprocess.run(  # noqa: E731
                ["git", *GIT_IDENTITY, *a], cwd=self.root, env=env, text=True, input=stdin,
                capture_output=True, check=True).stdout.strip()
            run("read-tree", parent)
            for rel in self.targets:
                blob = run("hash-object", "-w", "--", rel)
                mode = "100755" if os.access(self.root / rel, os.X_OK) else "100644"
                run("update-index", "--add", "--cacheinfo", f"{mode},{blob},{rel}")
            tree = run("write-tree")
            sha = run("commit-tree", tree, "-p", parent, stdin=f"{message}\n\n{trailer}\n")
            self._git("update-ref", self._ref(), sha, parent)
        finally:
            Path(index).unlink(missing_ok=True)
        return sha

    def head(self) -> str | None:
        if not self.is_git:
            return None
        out = self._git("rev-parse", "--verify", "--quiet", self._ref(), check=False)
        return out.stdout.strip() or None

    def head_message(self) -> str:
        if not self.is_git:
            return ""
        return self._git("log", "-1", "--format=%B", self._ref(), check=False).stdout

    def check_clean(self, allowed: dict[str, str] | None = None) -> None:
        """The run's file differs from HEAD once the run kept anything (HEAD is not its
        branch): compare it with the branch instead."""
        if not self.is_git or self.head() is None:
            return super().check_clean(allowed)
        for rel in self.targets:
            committed = self._git("show", f"{self._ref()}:{rel}", check=False)
            current = (self.root / rel).read_text(encoding="utf-8")
            if committed.returncode == 0 and committed.stdout == current:
                continue
            if allowed and allowed.get(rel) == current:
                continue
            if committed.returncode != 0:
                continue  # not on the branch yet: the baseline commits it
            from engine.model import UserError

            raise UserError(f"{self.root}: uncommitted changes to {rel} (run "
                            f"{self.run_name}); commit or stash them first")


class LibraryWatcher:
    """Polls a host's library specs' globs; a file added later joins as a new run."""

    def __init__(self, host, library: list[specs.Spec], poll_s: float = POLL_S) -> None:
        self.host = host
        self.library = [s for s in library if s.target.each is not None]
        self.poll_s = poll_s
        self.seen: dict[str, set[str]] = {}
        for spec in self.library:
            self.seen[spec.name] = set(matches(spec))

    def poll(self) -> list[str]:
        """Add and start runs for files that appeared; returns their run names."""
        added = []
        hosted = {loop.spec.name for loop in self.host.loops.values()}
        for spec in self.library:
            now = set(matches(spec))
            for rel in sorted(now - self.seen[spec.name]):
                one = for_file(spec, rel)
                if one.name in hosted:
                    continue
                try:
                    loop = self.host.add(one)
                except specs.UserError as exc:
                    self.host._report(f"library {spec.name}: {rel}: {exc}")
                    continue
                self.host.start(loop)
                added.append(one.name)
                for other in self.host.loops.values():
                    if isinstance(other.workspace, LibraryWorkspace):
                        other.workspace.prune([rel])
            self.seen[spec.name] = now
        return added

    async def run(self) -> None:
        while True:
            await cadence.beat(self.poll_s)
            try:
                self.poll()
            except OSError as exc:  # a folder gone for a moment: try again next time
                self.host._report(f"library watcher: {exc!r}")
