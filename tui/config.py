"""The app's own settings, remembered between sessions: for now the theme chosen from the
command palette. One small JSON file, `$XDG_CONFIG_HOME/autoresearch-tui/config.json`
(`~/.config/...` by default) — per person, not per store: a store can be shared."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autoresearch-tui" / "config.json"


def load() -> dict[str, Any]:
    """The settings, or none if the file is missing or unreadable (never an error)."""
    try:
        data = json.loads(path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(**settings: Any) -> None:
    """Merge `settings` into the file, atomically; a read-only home is not an error."""
    target = path()
    data = {**load(), **settings}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_suffix(".tmp")
        temp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        temp.replace(target)
    except OSError:
        pass
