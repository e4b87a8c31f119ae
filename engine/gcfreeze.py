"""Keep the garbage collector off the objects a process starts with, once per process."""

from __future__ import annotations

import gc

_frozen = False


def freeze_imports() -> None:
    """Move everything alive so far (imported modules: pydantic, Textual, Rich, the store)
    out of the garbage collector's reach, once per process. They live as long as the
    process anyway, and a full collection walking them costs tens of milliseconds each
    time one falls (every few thousand rounds of a fast run, and during the app's start)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
