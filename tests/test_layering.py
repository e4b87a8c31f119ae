"""The engine is a separate world (STYLE.md, after harlequin): no module under `engine/`
may import Textual or Rich, so headless runs on a GPU box stay lean and the layering holds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env

ENGINE_MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for p in (REPO / "engine").rglob("*.py")
)


def test_every_engine_module_is_listed() -> None:
    assert "engine.store" in ENGINE_MODULES and "engine.host" in ENGINE_MODULES


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_module_imports_neither_textual_nor_rich_nor_the_app(module: str) -> None:
    probe = (f"import importlib, sys; importlib.import_module({module!r}); "
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui')); "
             "print(','.join(bad))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} pulls in {done.stdout.strip()}"


def test_the_headless_cli_does_not_load_the_app() -> None:
    """`autoresearch-tui status` (a headless command) must not import Textual either."""
    probe = ("import sys; from tui import cli; "
             "cli.main(['--db', '/nonexistent/x.db', 'status']); "
             "print(','.join(sorted(m for m in sys.modules if m.startswith('textual'))))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert "textual" not in done.stdout
