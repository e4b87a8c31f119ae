"""Benchmark: the version tree (`t`) on a frontier run of many versions. Prints, against
baselines measured in the same app on the same store:

- opening the tree (key → screen drawn) against opening one experiment (enter → screen
  drawn), the app's other full screen;
- a cursor move in the tree against a cursor move in the changelog;
- a refresh with nothing new (what the tree does twice a second while it is open), in ms.

Usage: python bench/tree.py [--versions N] [--tried K] [--repeat R]
The store is synthetic (tui/fixtures.py `build_tree_store`): N versions, each made from a
random earlier one, with K reverted candidates under each. The app runs headless (Textual's
run_test driver): layout and rendering happen, terminal output does not. Medians of R.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tui.app import make_app  # noqa: E402
from tui.experiment_screen import ExperimentScreen  # noqa: E402
from tui.fixtures import build_tree_store, wait_until  # noqa: E402
from tui.tree_screen import TreeScreen  # noqa: E402


async def measure(db: Path, repeat: int, moves: int = 20) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in
                                   ("tree", "experiment", "tree_move", "log_move", "idle")}
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 30, "the run")
        await pilot.pause(1.5)  # the preload (engine imports) is done: neither pays for it
        for _ in range(repeat):
            t = time.perf_counter()
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, ExperimentScreen), 30)
            await pilot.pause()
            out["experiment"].append(time.perf_counter() - t)
            await pilot.press("escape")
            await pilot.pause()
            t = time.perf_counter()
            for _ in range(moves):
                await pilot.press("down")
            out["log_move"].append((time.perf_counter() - t) / moves)
            t = time.perf_counter()
            await pilot.press("t")
            screen = await wait_until(pilot, lambda: isinstance(app.screen, TreeScreen)
                                      and app.screen.tree_model and app.screen, 30)
            await pilot.pause()
            out["tree"].append(time.perf_counter() - t)
            t = time.perf_counter()
            for _ in range(moves):
                await pilot.press("down")
            out["tree_move"].append((time.perf_counter() - t) / moves)
            t = time.perf_counter()
            for _ in range(50):
                screen.refresh_tree()
            out["idle"].append((time.perf_counter() - t) / 50 * 1000)
            await pilot.press("escape")
            await pilot.pause()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=500)
    parser.add_argument("--tried", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tree.db"
        store, _ = build_tree_store(db, versions=args.versions, tried=args.tried)
        rows = store.max_experiment_id()
        store.close()
        got = asyncio.run(measure(db, args.repeat))
    med = {k: statistics.median(v) for k, v in got.items()}
    print(f"version tree: {args.versions} versions, {rows} experiments (median of {args.repeat})")
    print(f"  open the tree        {med['tree']:.2f} s   vs open one experiment "
          f"{med['experiment']:.2f} s   ratio {med['tree'] / med['experiment']:.2f}×")
    print(f"  cursor move in tree  {med['tree_move'] * 1000:.0f} ms  vs in the changelog "
          f"{med['log_move'] * 1000:.0f} ms   ratio {med['tree_move'] / med['log_move']:.2f}×")
    print(f"  refresh, nothing new {med['idle']:.2f} ms (twice a second while open)")


if __name__ == "__main__":
    main()
