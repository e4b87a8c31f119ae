"""Stop signals that arrive before the engine is ready to stop cleanly.

A headless engine is often started and stopped by a script (`timeout`, a scheduler, a test)
that may send SIGTERM within the first half second, while Python is still importing and the
store is opening. The CLI installs `catch_early()` as its very first act; the signals are
remembered, not obeyed, and the headless runner replays them (`take_early()`) once its
clean-stop handlers are in place. Commands that do not host runs give the previous handlers
back with `release_early()`, which ends the process quietly if a stop came meanwhile.
"""

from __future__ import annotations

import signal
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_early: list[int] = []
_previous: dict[int, Any] = {}


def _remember(signum: int, frame: object) -> None:
    _early.append(signum)


def catch_early() -> None:
    """Remember SIGINT and SIGTERM from now on (main thread only; elsewhere a no-op).
    Called again while already catching (`python -m tui` catches before importing the CLI),
    it keeps what was caught."""
    if _previous:
        return
    _early.clear()
    try:
        for sig in STOP_SIGNALS:
            _previous[sig] = signal.signal(sig, _remember)
    except ValueError:  # not the main thread: nothing to catch early
        _previous.clear()


def take_early() -> list[int]:
    """The stop signals caught so far (each once), for the runner's own handlers to obey."""
    taken = list(_early)
    _early.clear()
    return taken


def release_early() -> None:
    """Give back the handlers there were before `catch_early`; a stop that arrived meanwhile
    ends the process now, as it would have without us (SystemExit 128+signal, no traceback)."""
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()
    if _early:
        raise SystemExit(128 + _early[0])
