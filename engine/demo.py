"""The offline demo: copies the demo specs and their targets out of `checklists/demo/` into a
work folder (the project's own files are never modified), makes each a git repository, and
names the runs so that a second demo starts fresh next to the first in the same store.

A demo that did not finish (killed, or stopped with Ctrl-C) is resumed in its own folder
by the next `demo`; `demo --fresh` always starts a new one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from engine.model import UserError
from engine.store import Store
from engine.workspace import GIT_IDENTITY

DEMO_SOURCE = Path(__file__).resolve().parent.parent / "checklists" / "demo"
DEMO_SPECS = ("classifier.yaml", "sqlite-load.yaml")


#: Run statuses after which a demo is over (anything else was interrupted).
FINISHED = ("done", "failed")


def prepare(db: Path, workdir: Path | None = None, *, fresh: bool = False) -> list[Path]:
    """The spec paths to run: the last demo's, if it did not finish; else a fresh copy."""
    return prepare_or_resume(db, workdir, fresh=fresh)[0]


def prepare_or_resume(db: Path, workdir: Path | None = None, *,
                      fresh: bool = False) -> tuple[list[Path], bool]:
    """(spec paths, True if they resume an unfinished demo in its own folder)."""
    if not DEMO_SOURCE.is_dir():
        raise UserError(f"demo files not found at {DEMO_SOURCE} (run from a source checkout)")
    store = Store(db)
    runs = {r["name"]: r for r in store.runs()}
    store.close()
    suffix = ""
    n = 1
    while any(f"demo-{Path(s).stem}{suffix}" in runs for s in DEMO_SPECS):
        n += 1
        suffix = f"-{n}"
    if n > 1 and not fresh:
        last = _unfinished(db, [runs.get(f"demo-{Path(s).stem}{_suffix(n - 1)}")
                                for s in DEMO_SPECS])
        if last:
            return last, True
    return _copy(db, workdir, suffix), False


def _suffix(n: int) -> str:
    return "" if n == 1 else f"-{n}"


def _unfinished(db: Path, rows: list[dict | None]) -> list[Path] | None:
    """The spec paths of a demo whose runs did not all finish, if its folder is still there
    and no engine is running it now."""
    from engine.host import engine_alive

    started = [row for row in rows if row is not None]  # a kill may come between the two
    if not started or (len(started) == len(rows)
                       and all(row["status"] in FINISHED for row in started)):
        return None
    root = Path(started[0]["spec_path"] or "").parent
    paths = [root / name for name in DEMO_SPECS]
    if not all(p.is_file() for p in paths):
        return None
    if any(engine_alive(db, row["name"]) for row in started):
        return None  # that demo is running elsewhere: start a new one beside it
    return paths


def _copy(db: Path, workdir: Path | None, suffix: str) -> list[Path]:
    root = (workdir or db.resolve().parent / "autoresearch-demo") / f"demo{suffix or '-1'}"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(DEMO_SOURCE, root, ignore=shutil.ignore_patterns("__pycache__", "*.db*"))
    specs = []
    for name in DEMO_SPECS:
        path = root / name
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"^name:\s*(\S+)", lambda m: f"name: {m[1]}{suffix}", text, count=1,
                      flags=re.MULTILINE)
        path.write_text(text, encoding="utf-8")
        specs.append(path)
    if shutil.which("git"):
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            git_init(folder)
    return specs


def git_init(folder: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *GIT_IDENTITY, *args], cwd=folder, check=True,
                       capture_output=True)

    git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    git("commit", "--quiet", "-m", "demo target as shipped")
