"""Shipped specs are templates: running one works on a copy, never on the project's files.

A spec is a template when its file lies inside the project's own `checklists/` folder (the
one beside this package: a source checkout or an editable install). Running it copies the
spec and its workspace folder into `autoresearch-runs/<spec name>/` beside the store, makes
the workspace a git repository (so the run's branch lives there, not in the project's
history), and runs that copy; the same template run again picks up the same copy, so the
run resumes as any other. A person's own spec, anywhere else, runs in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine import spec as specs
from engine.demo import git_init
from engine.model import UserError

#: The project's shipped specs and targets.
TEMPLATES = Path(__file__).resolve().parent.parent / "checklists"
#: Where template copies go, beside the store.
COPIES = "autoresearch-runs"


def is_template(path: str | Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(TEMPLATES)
    except (OSError, ValueError):  # a NUL in the path, a loop of links: load_spec says why
        return False


def load_runnable(path: str | Path, db: Path) -> tuple[specs.Spec, str | None]:
    """The spec to run for `path`, and a line saying where, when it is a template's copy."""
    if not is_template(path):
        return specs.load_spec(path), None
    template = specs.load_spec(path)  # a broken template fails here, at its own lines
    copy = _copy_in_store(template, db) or copy_template(template, db)
    spec = specs.load_spec(copy)
    return spec, (f"{path} is a template shipped with autoresearch-tui: running a copy in "
                  f"{copy.parent} (the project's own files are never changed)")


def _copy_in_store(template: specs.Spec, db: Path) -> Path | None:
    """The spec file of a run of this name the store already has, when it is a copy (of
    this template, by `run` or `demo`): the same run goes on in the same folder."""
    if not db.exists():
        return None
    from engine.store import Store

    store = Store(db, readonly=True)
    try:
        run = store.get_run(template.name)
    finally:
        store.close()
    where = Path(run["spec_path"]) if run and run["spec_path"] else None
    if where is not None and where.is_file() and not is_template(where):
        return where
    return None


def copy_template(template: specs.Spec, db: Path) -> Path:
    """Copy the template's spec and workspace once; returns the copy's spec path."""
    assert template.path is not None
    home = template.path.parent
    root = db.resolve().parent / COPIES / template.name
    spec_copy = root / template.path.name
    workspace = template.workspace
    if not workspace.is_relative_to(home):
        raise UserError(f"{template.path}: a template's workspace must lie in its own folder "
                        "(copy the spec and its files somewhere of your own to run it)")
    target = root / workspace.relative_to(home)  # root itself when the workspace is "."
    has_git = bool(shutil.which("git"))
    if spec_copy.is_file() and (target / ".git").exists() == has_git:
        return spec_copy  # run before: the copy holds its best version and branch
    # A copy cut short (a kill) is completed; its git repository is made last, so that a
    # copy without one is known to be unfinished.
    shutil.copytree(workspace, target, ignore=shutil.ignore_patterns("__pycache__", "*.db*",
                                                                     ".git"),
                    dirs_exist_ok=True)
    shutil.copy2(template.path, spec_copy)
    if has_git:
        git_init(target)  # its own repository: the run's branch never lands in another
    return spec_copy  # run before: the copy holds its best version and branch
    workspace = template.workspace
    if not workspace.is_relative_to(home):
        raise UserError(f"{template.path}: a template's workspace must lie in its own folder "
                        "(copy the spec and its files somewhere of your own to run it)")
    rel = workspace.relative_to(home)
    ignore = shutil.ignore_patterns("__pycache__", "*.db*", ".git")
    target = root / rel  # the spec's own folder when rel is "."
    # dirs_exist_ok: a copy cut short (a kill) is completed; the spec is copied last.
    shutil.copytree(workspace, target, ignore=ignore, dirs_exist_ok=True)
    if shutil.which("git") and not (target / ".git").exists():
        git_init(target)  # its own repository: the run's branch never lands in another
    shutil.copy2(template.path, spec_copy)
    return spec_copy
