"""Benchmark: the app on a library store (issue 16, "the app on that store while it runs").
Prints each figure with a ratio against a baseline measured in the same run:

- time to first screen (process start → runs pane, changelog and chart filled, a key
  handled) on a store of 200 runs, against the same app on a 1-run store;
- the CPU of `attach` while another process writes rounds to the store (every run's row
  changes: rounds, cost, heartbeat), against the same app on the 1-run store with the same
  writer;
- 50 Downs queued at once in the runs pane (a held key's repeats): time until the selection
  landed and the app is idle, against one Down on the same store.

Usage: python bench/app_library.py [--runs N] [--seconds S] [--rate R] [--repeat K]
The app runs headless (Textual's run_test driver): layout and rendering happen, terminal
output does not. Each figure is measured in fresh processes, median of K.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import _apptools  # bench/, beside this script
from _apptools import engine_probed, paced, result, run_child, sample_items

T0 = time.monotonic()  # as early as possible: the first screen counts the imports
#: The code measured: this tree, or another checkout (`--against`: the old runs pane).
REPO = Path(os.environ.get("APP_LIBRARY_REPO") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(REPO))
SIZE = (160, 48)


# ---------------------------------------------------------------- children


def runs_pane(app):
    from tui.runs_pane import RunsPane

    return app.dash.query_one(RunsPane)


def shown_runs(app) -> list[int]:
    """The runs in the pane's order, in this tree or in the old one (a ListView of cards)."""
    pane = runs_pane(app)
    if hasattr(pane, "view"):
        return list(pane.view.order)
    return [card.run_id for card in pane.query_one("#runs-list").children]


def cursor(app) -> int:
    pane = runs_pane(app)
    return pane.index if hasattr(pane, "view") else pane.query_one("#runs-list").index


async def first_screen(app, pilot) -> None:
    pane = runs_pane(app)
    while app.board.detail is None or not (getattr(pane, "shown", None)
                                           or getattr(pane, "cards", None)):
        await pilot.pause(0.01)


async def child_tti(db: Path) -> dict:
    from tui.app import make_app

    app = make_app(db, [], attach=True)
    async with app.run_test(size=SIZE) as pilot:
        await first_screen(app, pilot)
        await pilot.press("down")
        ready = time.monotonic() - T0
        pane = runs_pane(app)
        drawn = pane.drawn if hasattr(pane, "drawn") else len(pane.cards)
    return {"tti_s": ready, "cards_drawn": drawn}


async def child_cpu(db: Path, seconds: float) -> dict:
    from tui.app import make_app

    app = make_app(db, [], attach=True)
    async with app.run_test(size=SIZE) as pilot:
        await first_screen(app, pilot)
        await engine_probed(app, pilot)
        seen = 0

        def start() -> None:
            nonlocal seen
            seen = app.board.last_id

        cpu_pct = await _apptools.cpu_window(pilot, seconds, start)
        seen = app.board.last_id - seen
    return {"cpu_pct": cpu_pct, "seen": seen}


async def child_downs(db: Path, count: int) -> dict:
    from textual import events
    from textual._wait import wait_for_idle

    from tui.app import make_app

    app = make_app(db, [], attach=True)
    async with app.run_test(size=SIZE) as pilot:
        await first_screen(app, pilot)
        await engine_probed(app, pilot)
        await pilot.press("1")  # the runs pane
        order = shown_runs(app)
        runs_pane(app).select(order[0])  # from the first run: every Down moves
        app.select_run(order[0])
        await pilot.pause(0.5)
        assert cursor(app) == 0
        want = order[min(len(order) - 1, count)]
        started = time.monotonic()
        for _ in range(count):  # queued at once, as a held key's repeats arrive
            key = events.Key("down", None)
            key.set_sender(app)
            app._driver.send_message(key)
        while app.selected_run != want or app.board.detail.run_id != want:
            await asyncio.sleep(0.002)
        await wait_for_idle(0)
        took = time.monotonic() - started
    return {"s": took}


def child_writer(db: Path, rate: float, seconds: float) -> None:
    """Adds `rate` experiments a second, spread over every run, through the Store, like a
    library host would: each round also updates its run's row (rounds, cost, heartbeat)."""
    from engine.store import Store

    store = Store(db)
    runs = [r["id"] for r in store.runs() if r["status"] == "running"] or \
        [r["id"] for r in store.runs()]
    rounds = {r: store.last_round(r) for r in runs}
    cost = {r["id"]: r["cost_usd"] or 0.0 for r in store.runs()}
    rng = random.Random(3)
    for _ in paced(rate, seconds):
        run_id = rng.choice(runs)
        rounds[run_id] += 1
        exp = store.start_experiment(run_id, round=rounds[run_id], kind="candidate",
                                     parent=None, description="lead with the answer",
                                     diff="--- a\n+++ b\n")
        score = rng.random()
        cost[run_id] += 0.004
        keep = rng.random() < 0.1
        store.finish_experiment(
            exp, verdict="kept" if keep else "reverted", reason="", score=score,
            delta=0.01 if keep else -0.01,
            items=sample_items(), worker="local:1",
            run_update={"rounds": rounds[run_id], "heartbeat": time.time(),
                        "cost_usd": cost[run_id]})


# ---------------------------------------------------------------- parent


def spawn(*args: str, repo: Path = REPO) -> subprocess.Popen[str]:
    return _apptools.spawn(__file__, *args, repo=repo, env={"APP_LIBRARY_REPO": str(repo)})


def median_of(repeat: int, *args: str, repo: Path = REPO) -> dict:
    seen = [result(spawn(*args, repo=repo)) for _ in range(repeat)]
    return {k: statistics.median(r[k] for r in seen) for k in seen[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--per-run", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=50.0, help="experiments/s written")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--downs", type=int, default=50)
    parser.add_argument("--child", choices=["tti", "cpu", "writer", "downs"])
    parser.add_argument("--db", type=Path)
    parser.add_argument("--against", type=Path,
                        help="another checkout (e.g. main before this change): its first "
                             "screen and 50 Downs on the same store, as a ratio")
    args = parser.parse_args()
    if args.child:
        run_child(args.child, {"tti": lambda: child_tti(args.db),
                               "cpu": lambda: child_cpu(args.db, args.seconds),
                               "downs": lambda: child_downs(args.db, args.downs),
                               "writer": lambda: child_writer(args.db, args.rate, args.seconds)})
        return

    from tui.fixtures import build_library

    with tempfile.TemporaryDirectory() as tmp:
        big, one = Path(tmp) / "library.db", Path(tmp) / "one.db"
        started = time.monotonic()
        build_library(big, runs=args.runs, per_run=args.per_run,
                      budget={"daily_cost_usd": 50.0}).close()
        build_library(one, runs=1, per_run=args.per_run).close()
        print(f"store: {args.runs} runs × {args.per_run} experiments (built in "
              f"{time.monotonic() - started:.1f} s, {big.stat().st_size / 2**20:.1f} MB); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        k = max(1, args.repeat)
        for _ in range(1):  # warm the page cache and the .pyc files
            result(spawn("--child", "tti", "--db", str(one)))
        full = median_of(k, "--child", "tti", "--db", str(big))
        base = median_of(k, "--child", "tti", "--db", str(one))
        print(f"first screen: {full['tti_s']:.2f} s with {args.runs} runs vs "
              f"{base['tti_s']:.2f} s with 1 → ratio {full['tti_s'] / base['tti_s']:.2f}  "
              f"(target < 1 s; {full['cards_drawn']:.0f} run cards drawn vs "
              f"{base['cards_drawn']:.0f}; median of {k})")
        cpu_run = partial(_apptools.cpu_run, spawn, seconds=args.seconds,
                          writer=["--rate", str(args.rate)])
        busy, small = cpu_run(big), cpu_run(one)
        print(f"attach CPU while {args.rate:g} experiments/s land: {busy['cpu_pct']:.1f}% of "
              f"a core with {args.runs} runs vs {small['cpu_pct']:.1f}% with 1 → ratio "
              f"{busy['cpu_pct'] / max(small['cpu_pct'], 0.1):.2f}  (target < 25%; "
              f"{busy['seen']:.0f} experiments seen)")
        many = median_of(k, "--child", "downs", "--db", str(big), "--downs", str(args.downs))
        once = median_of(k, "--child", "downs", "--db", str(big), "--downs", "1")
        print(f"{args.downs} queued Downs: {many['s']:.3f} s vs {once['s']:.3f} s for one → "
              f"ratio {many['s'] / max(once['s'], 1e-3):.1f}  (was 4 s; median of {k})")
        if args.against:
            old = median_of(k, "--child", "tti", "--db", str(big), repo=args.against)
            print(f"first screen with {args.runs} runs against {args.against}: "
                  f"{full['tti_s']:.2f} s vs {old['tti_s']:.2f} s → ratio "
                  f"{full['tti_s'] / old['tti_s']:.2f}  ({old['cards_drawn']:.0f} cards there)")
            old = median_of(k, "--child", "downs", "--db", str(big), "--downs",
                            str(args.downs), repo=args.against)
            print(f"{args.downs} queued Downs against {args.against}: {many['s']:.3f} s vs "
                  f"{old['s']:.3f} s → ratio {many['s'] / old['s']:.2f}")


if __name__ == "__main__":
    main()
