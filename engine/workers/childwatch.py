"""Child processes are awaited through pidfds, as Python 3.12 does by default on Linux.

Python 3.11's default child watcher starts one thread per child process. On a fast
evaluation that thread is born, waits and hands its result over while the engine records
the last round, and the two take turns holding the GIL: bench/engine_overhead.py measured
1.93 ms a round with it and 1.55 ms with pidfds (a bare spawn loop: 1.08 and 1.06 ms).

The watcher below is 3.12's: it works for whichever event loop spawns the child, so a
Textual app, a test's loop and the headless CLI all share it. On 3.12+ (already the
default) and where pidfds are missing (not Linux, kernels before 5.3) nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class PidfdWatcher(asyncio.AbstractChildWatcher):
    """Waits for each child on the running loop's selector: no thread, no signal handler."""

    def __enter__(self) -> PidfdWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass  # every call uses the loop running it

    def add_child_handler(self, pid: int, callback: Callable[..., object], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop._add_reader(pidfd, self._do_wait, pid, pidfd, callback, args)  # type: ignore[attr-defined]

    def _do_wait(self, pid: int, pidfd: int, callback: Callable[..., object],
                 args: tuple[Any, ...]) -> None:
        asyncio.get_running_loop()._remove_reader(pidfd)  # type: ignore[attr-defined]
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere
            returncode = 255
            log.warning("child process pid %d exit status already read: will report 255", pid)
        else:
            returncode = os.waitstatus_to_exitcode(status)
        os.close(pidfd)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        # Never used by asyncio's subprocess transports; the reader goes when the child exits.
        return False


def _pidfds_work() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def watch_children_with_pidfds() -> None:
    """Use PidfdWatcher for this process's asyncio subprocesses (idempotent)."""
    if sys.version_info >= (3, 12) or sys.platform != "linux" or not _pidfds_work():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        if not isinstance(getattr(policy, "_watcher", None), PidfdWatcher):
            policy.set_child_watcher(PidfdWatcher())
