"""The engine is a separate world (STYLE.md, after harlequin): no module under `engine/`
may import Textual or Rich, so headless runs on a GPU box stay lean and the layering holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, cli_env

ENGINE_MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for p in (REPO / "engine").rglob("*.py")
)


def test_every_engine_module_is_listed() -> None:
    assert "engine.store" in ENGINE_MODULES and "engine.host" in ENGINE_MODULES


def first_leak(modules: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Import `modules` in turn in one fresh process; the first after which Textual, Rich or
    the app is loaded is the one that pulled it in ("" when none does). One process for all
    says what a process per module said, at a hundredth of the cost."""
    probe = ("import importlib, sys\n"
             f"for module in {modules!r}:\n"
             "    importlib.import_module(module)\n"
             "    bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui'))\n"
             "    if bad:\n"
             "        print(module, 'pulls in', ','.join(bad[:5]))\n"
             "        break\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_no_engine_module_imports_textual_nor_rich_nor_the_app() -> None:
    assert first_leak(ENGINE_MODULES, REPO, cli_env()) == ""


def test_the_layering_check_names_a_module_that_imports_rich(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text("import rich.text\n")
    assert first_leak(["json", "leaky"], tmp_path).startswith("leaky pulls in rich")


def test_the_headless_cli_does_not_load_the_app() -> None:
    """`autoresearch-tui status` (a headless command) must not import Textual either."""
    probe = ("import sys; from tui import cli; "
             "cli.main(['--db', '/nonexistent/x.db', 'status']); "
             "print(','.join(sorted(m for m in sys.modules if m.startswith('textual'))))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert "textual" not in done.stdout
