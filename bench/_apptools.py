"""What the app's benchmarks (bench/tui_perf.py, bench/app_library.py) share: each figure is
taken in a fresh child process of the script (`spawn`, `result`), the app's CPU over a window
while a writer child adds experiments to the store (`cpu_window`, `cpu_run`), and the writer's
pacing and item results (`paced`, `sample_items`).

Imported by the scripts as a sibling (`python bench/NAME.py` puts bench/ on the path); it
imports nothing of the project at module level, so a child's own timing of the imports
(its T0) is not moved by it.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: The checklist items every written experiment reports, each on three samples.
ITEMS = ("accurate", "fast", "small", "not-overfit")

Spawn = Callable[..., "subprocess.Popen[str]"]


def sample_items() -> list[Any]:
    """Item results as the demo classifier's: four items, three samples, half of them passed."""
    from engine.model import ItemResult

    return [ItemResult(item, sample % 2 == 0, "", sample) for item in ITEMS
            for sample in range(3)]


def paced(rate: float, seconds: float) -> Iterator[None]:
    """Yields `rate` times a second for `seconds` (a writer's steps, evenly spaced)."""
    deadline = time.monotonic() + seconds
    tick = 1.0 / rate
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        yield
        next_at += tick
        time.sleep(max(0.0, next_at - time.monotonic()))


def run_child(name: str, children: dict[str, Callable[[], Any]]) -> None:
    """Runs the child `name`; a coroutine's figures are printed as the one JSON line its
    parent reads (`result`)."""
    work = children[name]()
    if inspect.iscoroutine(work):
        import asyncio  # here: the scripts' children count their imports from T0

        print(json.dumps(asyncio.run(work)))


async def engine_probed(app: Any, pilot: Any) -> None:
    """Until the app's one-off background import is done (AutoresearchApp._preload), so a
    measurement sees the steady state."""
    while app._engine_alive is None:
        await pilot.pause(0.01)


async def cpu_window(pilot: Any, seconds: float, start: Callable[[], None] | None = None) \
        -> float:
    """The app's CPU in % of a core over `seconds`, once the parent (told `ready`) has had a
    second to start its writer; `start` is called as the window opens."""
    print("ready", flush=True)
    await pilot.pause(1.0)  # let the writer start
    if start is not None:
        start()
    wall, cpu = time.monotonic(), time.process_time()
    await pilot.pause(seconds)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return 100 * cpu / wall


def spawn(script: str, *args: str, repo: Path, env: dict[str, str] | None = None) \
        -> subprocess.Popen[str]:
    """`script` again as a child, with `repo` (the code measured) first on its path."""
    return subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(repo),
                                            **(env or {})})


def result(proc: subprocess.Popen[str]) -> dict:
    """A child's figures (its last line of output); a failed child fails the benchmark."""
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"child failed ({proc.returncode})"
    return json.loads(out.strip().splitlines()[-1])


def cpu_run(spawn: Spawn, db: Path, seconds: float, writer: Sequence[str] | None) -> dict:
    """The app child's `cpu` figures on `db`, with a writer child (its extra arguments:
    `writer`) running through the window, or none."""
    app = spawn("--child", "cpu", "--db", str(db), "--seconds", str(seconds))
    assert app.stdout is not None
    assert app.stdout.readline().strip() == "ready"
    proc = None if writer is None else spawn(
        "--child", "writer", "--db", str(db), "--seconds", str(seconds + 2), *writer)
    figures = result(app)
    if proc is not None:
        proc.wait(timeout=60)
    return figures
