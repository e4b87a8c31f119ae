"""The engine's watchdog: `python -m engine.watchdog MARK SCRATCH`, started by
engine/leftovers.py with a pipe from the engine on its stdin.

The engine writes the paths of its records there (one a line) and nothing else; when the pipe
closes the engine has exited (a clean stop, a crash or SIGKILL alike). Then every process
carrying the engine's mark is killed, its scratch folder removed and its records deleted.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    mark, scratch = argv[0], argv[1]
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # it outlives the engine's terminal
    records = [line.decode(errors="replace").strip() for line in sys.stdin.buffer]
    from engine.leftovers import kill_marked  # (after the wait: nothing to import before)

    kill_marked(mark)
    shutil.rmtree(scratch, ignore_errors=True)
    for record in records:
        if record and Path(record).name == f"{mark.split('-')[0]}.json":
            Path(record).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    os.nice(5)
    sys.exit(main(sys.argv[1:]))
