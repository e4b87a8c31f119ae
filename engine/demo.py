"""The offline demo: copies the demo specs and their targets out of `checklists/demo/` into a
work folder (the project's own files are never modified), makes each a git repository, and
names the runs so that a second demo starts fresh next to the first in the same store."""

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


def prepare(db: Path, workdir: Path | None = None) -> list[Path]:
    """Copy the demo into a fresh folder; returns the spec paths to run."""
    if not DEMO_SOURCE.is_dir():
        raise UserError(f"demo files not found at {DEMO_SOURCE} (run from a source checkout)")
    store = Store(db)
    taken = {r["name"] for r in store.runs()}
    store.close()
    suffix = ""
    n = 1
    while any(f"demo-{Path(s).stem}{suffix}" in taken for s in DEMO_SPECS):
        n += 1
        suffix = f"-{n}"
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
            _git_init(folder)
    return specs


def _git_init(folder: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *GIT_IDENTITY, *args], cwd=folder, check=True,
                       capture_output=True)

    git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    git("commit", "--quiet", "-m", "demo target as shipped")
