"""sqlite-utils, imported without pandas and numpy.

sqlite-utils imports pandas and numpy when they are installed — as they are on most
machines that train models — only to map their scalar types to column types when it
creates a table from Python values. The store never hands it such values (it creates its
tables in migrations and binds plain Python values), yet the import cost every command that
writes half a second of CPU (the app's first steering key, `guide`, the engine) and the
process some 45 MB. So while sqlite-utils is first imported, a finder turns away those two
imports — only those made by sqlite-utils' own module, on this thread: another thread
importing numpy meanwhile (a params mutator being built) gets it as usual, and so does
anyone later.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

#: Imported by sqlite-utils only for type mappings the store does not use.
NOT_FOR_THE_STORE = frozenset({"pandas", "numpy"})
#: The module of sqlite-utils that imports them.
IMPORTER = "sqlite_utils.db"

_lock = threading.Lock()


class _NotForTheStore(importlib.abc.MetaPathFinder):
    """Refuses NOT_FOR_THE_STORE to sqlite-utils' module (it treats that as not installed)."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: Any = None) -> None:
        if name in NOT_FOR_THE_STORE:
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_globals.get("__name__") == IMPORTER:
                    raise ModuleNotFoundError(f"{name} is not needed by the store", name=name)
                frame = frame.f_back  # type: ignore[assignment]
        return None


def sqlite_utils() -> ModuleType:
    """The sqlite_utils package (its first import made without NOT_FOR_THE_STORE)."""
    loaded = sys.modules.get("sqlite_utils")
    if loaded is not None:
        return loaded
    with _lock:
        finder = _NotForTheStore()
        sys.meta_path.insert(0, finder)
        try:
            return importlib.import_module("sqlite_utils")
        finally:
            sys.meta_path.remove(finder)
