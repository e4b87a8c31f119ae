"""Benchmark: the app on a big store. Prints each figure of the TUI issue with a ratio against
a baseline measured in the same run:

- time to interactive (process start → dashboard filled and a key handled) and RSS, on a
  store of 100,000 experiments over 10 runs, against the same app on an empty store;
- the app's CPU use while a writer process adds 20 experiments a second to the watched run,
  against the same app watching the same store with no writer; plus how late updates land
  and how often the changelog was rebuilt (it must not be, on updates).

Usage: python bench/tui_perf.py [--experiments N] [--seconds S] [--repeat R]
The app runs headless (Textual's run_test driver): layout and rendering happen, terminal
output does not. Time to interactive is measured R times on each store (interleaved, each in
a fresh process) and reported as the median, with the best: on a shared machine one run can
be off by a third. The load average is printed for the same reason.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _apptools  # bench/, beside this script
from _apptools import engine_probed, paced, result, run_child, sample_items

T0 = time.monotonic()  # as early as possible: time to interactive counts the imports
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


# ---------------------------------------------------------------- children


async def child_tti(db: Path) -> dict:
    from tui.app import make_app
    from tui.changelog_pane import Changelog

    app = make_app(db, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        while app.board.runs and app.board.detail is None:
            await pilot.pause(0.01)
        table = app.dash.query_one(Changelog).table
        await pilot.press("down")
        interactive = time.monotonic() - T0
        assert not app.board.runs or table.cursor_row == 1
        await pilot.pause(0.5)
        now, peak = rss_mb()
    return {"tti_s": interactive, "rss_mb": now, "peak_mb": peak}


async def child_cpu(db: Path, seconds: float) -> dict:
    from tui.app import make_app
    from tui.changelog_pane import Changelog

    app = make_app(db, [], attach=True)
    lags: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        # Steady state only: 1 s after start the app imports the engine in a background thread
        # (AutoresearchApp._preload, ~0.4 s of CPU once); whether that one-off import fell
        # inside the measured window depended on how fast the app had started.
        while app.board.detail is None:
            await pilot.pause(0.01)
        await engine_probed(app, pilot)
        changelog = app.dash.query_one(Changelog)
        loads = 0
        original = changelog.load

        def counted(*args, **kwargs):  # count full rebuilds of the table
            nonlocal loads
            loads += 1
            return original(*args, **kwargs)

        changelog.load = counted
        board_poll = app.board.poll

        def timed_poll():
            changes = board_poll()
            now = time.time()
            lags.extend(now - r["finished"] for r in changes.experiments if r["finished"])
            return changes

        app.board.poll = timed_poll
        cpu_pct = await _apptools.cpu_window(pilot, seconds, lags.clear)
        rows = changelog.table.row_count
    lags.sort()
    return {"cpu_pct": cpu_pct, "loads": loads, "rows": rows, "seen": len(lags),
            "lag_p50": lags[len(lags) // 2] if lags else None,
            "lag_max": lags[-1] if lags else None, "rss_mb": rss_mb()[0]}


def child_writer(db: Path, rate: float, seconds: float) -> None:
    """Adds `rate` experiments a second to run 1, through the Store, like an engine would."""
    from engine.store import Store

    store = Store(db)
    store.update_run(1, status="running")
    round_no = store.last_round(1)
    for _ in paced(rate, seconds):
        round_no += 1
        exp = store.start_experiment(1, round=round_no, kind="candidate", parent=None,
                                     description=f"lr {round_no} → {round_no + 1}",
                                     diff="--- a\n+++ b\n")
        score = (round_no % 12) / 12
        store.finish_experiment(
            exp, verdict="reverted", reason="worse", score=score, delta=score - 1,
            items=sample_items(), worker="local:1",
            run_update={"rounds": round_no, "heartbeat": time.time()})


# ---------------------------------------------------------------- parent


def spawn(*args: str) -> subprocess.Popen[str]:
    return _apptools.spawn(__file__, *args, repo=REPO)


def tti_runs(big: Path, empty: Path, repeat: int) -> tuple[dict, dict]:
    """Median time to interactive and RSS on each store, `repeat` fresh processes each,
    alternating between the stores so both see the same background load."""
    runs: dict[Path, list[dict]] = {empty: [], big: []}
    for _ in range(repeat):
        for db, seen in runs.items():
            seen.append(result(spawn("--child", "tti", "--db", str(db))))

    def summary(seen: list[dict]) -> dict:
        return {"tti_s": statistics.median(r["tti_s"] for r in seen),
                "best_s": min(r["tti_s"] for r in seen),
                "rss_mb": statistics.median(r["rss_mb"] for r in seen),
                "peak_mb": max(r["peak_mb"] for r in seen)}

    return summary(runs[big]), summary(runs[empty])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="time-to-interactive runs")
    parser.add_argument("--child", choices=["tti", "cpu", "writer"])
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, {"tti": lambda: child_tti(args.db),
                               "cpu": lambda: child_cpu(args.db, args.seconds),
                               "writer": lambda: child_writer(args.db, 20.0, args.seconds)})
        return

    from tui.fixtures import build_store

    with tempfile.TemporaryDirectory() as tmp:
        big, empty = Path(tmp) / "big.db", Path(tmp) / "empty.db"
        started = time.monotonic()
        build_store(big, runs=args.runs, experiments=args.experiments).close()
        print(f"store: {args.experiments:,} experiments over {args.runs} runs "
              f"(built in {time.monotonic() - started:.1f} s, "
              f"{big.stat().st_size / 2**20:.0f} MB on disk)")
        from engine.store import Store
        Store(empty).close()
        load = os.getloadavg()[0]
        full, base = tti_runs(big, empty, max(1, args.repeat))
        print(f"time to interactive: {full['tti_s']:.2f} s (best {full['best_s']:.2f}) vs "
              f"{base['tti_s']:.2f} s (best {base['best_s']:.2f}) on an empty store → ratio "
              f"{full['tti_s'] / base['tti_s']:.2f}  (target < 1.5 s; median of "
              f"{max(1, args.repeat)}; load average {load:.1f} on {os.cpu_count()} CPUs)")
        print(f"RSS after loading:   {full['rss_mb']:.0f} MB vs {base['rss_mb']:.0f} MB on an "
              f"empty store → ratio {full['rss_mb'] / base['rss_mb']:.2f}  (peak "
              f"{full['peak_mb']:.0f} MB; target < 300 MB)")
        idle = _apptools.cpu_run(spawn, big, args.seconds, writer=None)
        busy = _apptools.cpu_run(spawn, big, args.seconds, writer=[])
        ratio = busy["cpu_pct"] / max(idle["cpu_pct"], 0.1)
        print(f"CPU while 20 experiments/s land: {busy['cpu_pct']:.1f}% of one core vs "
              f"{idle['cpu_pct']:.1f}% watching the same store idle → ratio {ratio:.1f}  "
              f"(target < 25%)")
        print(f"updates: {busy['seen']} experiments shown, lag p50 {busy['lag_p50']:.2f} s, "
              f"max {busy['lag_max']:.2f} s (target ≤ 1 s); changelog rebuilt "
              f"{busy['loads']} times during the updates (diff-updated: 0 expected); "
              f"RSS {busy['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
