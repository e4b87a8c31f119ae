"""`run --headless`: host the runs and print what happens, one line at a time.

On stdout: a line per finished experiment, every steering command the engine applied (from
`attach` or the CLI), and, while an evaluation runs longer than LIVE_AFTER_S, a liveness line
at most every LIVE_EVERY_S (its elapsed time and last output line) — so "paused" and "hung"
never look the same. Problems a person must act on go to stderr.

Ctrl-C or SIGTERM stops cleanly after recording (again within 2 s forces); the handlers are
in place before anything else happens, and a signal that came even earlier (while Python was
importing: engine/signals.py) is obeyed as soon as they are. A reader that goes away
(`run --headless | head`) stops the runs cleanly too, and the CLI exits quietly.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from engine import cadence, liveness, signals
from engine.text import printable

#: An evaluation running this long gets liveness lines...
LIVE_AFTER_S = 5.0
#: ...at most this often.
LIVE_EVERY_S = 5.0
#: How often liveness (and steering another engine applied) is looked for; this engine's
#: own steering is printed as it is applied.
TICK_S = 5 * cadence.BEAT_S
#: A second stop signal within this many seconds forces the stop.
FORCE_WITHIN_S = 2.0


class Printer:
    """Writes whole lines to one stream; when its reader has gone (a closed pipe) it goes
    quiet — the stream is pointed at /dev/null so nothing buffered complains later — and
    calls `on_closed` once."""

    def __init__(self, out: TextIO, on_closed: Callable[[], None] = lambda: None) -> None:
        self.out = out
        self.on_closed = on_closed
        self.closed = False

    def __call__(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, file=self.out, flush=True)
        except BrokenPipeError:
            self.closed = True
            silence(self.out)
            self.on_closed()


def silence(stream: TextIO) -> None:
    """Point a real file's descriptor at /dev/null (a StringIO is left alone)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def experiment_line(exp: dict[str, Any]) -> str:
    """`round   3  reverted       7 (+1)      x 1 → 0  — worse by 1`, terminal-safe."""
    score = "-" if exp["score"] is None else f"{exp['score']:.4g}"
    delta = "" if exp["delta"] is None else f" ({exp['delta']:+.4g})"
    why = (f"  — {exp['reason']}" if exp["verdict"] not in ("baseline", "kept")
           and exp["reason"] else "")
    return printable(f"round {exp['round']:>3}  {exp['verdict']:<11} {score:>8}{delta:<12} "
                     f"{exp['description']}{why}", one_line=True)


#: The columns an experiment's line shows (HeadlessView.report reads only these).
_LINE_FIELDS = ("id", "run_id", "round", "verdict", "score", "delta", "description", "reason")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class HeadlessView:
    """What the headless window shows of a host's runs; `report` on every host notification,
    `tick` every TICK_S."""

    def __init__(self, host: Any, out: Printer, err: Printer) -> None:
        self.host = host
        self.store = host.store
        self.out = out
        self.err = err
        self.printed = {rid: _last_id(self.store, rid) for rid in host.loops}
        self.alerts: dict[int, str | None] = {}
        self.commands_seen = liveness.last_command_id(self.store)
        self.applied_seen: int | None = None  # the host's count of applied commands, read
        self.live_said: dict[int, float] = {}
        self.seen: dict[int, int] = {}  # each run's change count at the last report
        self.scheduled = False

    def _prefix(self, run_id: int | None) -> str:
        if run_id is None:
            return "[all runs] " if len(self.host.loops) > 1 else ""
        return f"[{self.host.loops[run_id].spec.name}] " if len(self.host.loops) > 1 else ""

    def soon(self) -> None:
        """A host notification: one report per pass of the event loop, however many runs
        changed in it."""
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.report)

    def report(self) -> None:
        # Only the runs that changed since the last report are read (a library hosts
        # hundreds): reading every run on every change made a round's cost grow with them.
        self.scheduled = False
        self.steering()
        changed = []
        for run_id in self.host.changed_since(self.seen):
            run_loop = self.host.loops.get(run_id)
            if run_loop is None:
                continue
            if run_loop.alert != self.alerts.get(run_id):
                self.alerts[run_id] = run_loop.alert
                if run_loop.alert:
                    self.err(f"[{run_loop.spec.name}] "
                             f"{printable(run_loop.alert, one_line=True)}")
            self.printed.setdefault(run_id, 0)  # joined while the host runs (a new file)
            changed.append(run_id)
        if not changed:
            return
        # One read for every run that changed (a pass of the event loop sees dozens at
        # library size), oldest first; a run's lines stop at its first experiment in flight.
        marks = ",".join("?" * len(changed))
        rows = self.store.conn.execute(
            "SELECT id, run_id, round, verdict, score, delta, description, reason FROM "
            f"experiments WHERE id > ? AND run_id IN ({marks}) ORDER BY id",
            [min(self.printed[r] for r in changed), *changed]).fetchall()
        held: set[int] = set()
        for row in rows:
            exp = dict(zip(_LINE_FIELDS, row, strict=True))
            run_id = exp["run_id"]
            if run_id in held or exp["id"] <= self.printed[run_id]:
                continue
            if exp["verdict"] == "running":
                held.add(run_id)
                continue
            self.out(self._prefix(run_id) + experiment_line(exp))
            self.printed[run_id] = exp["id"]
            self.live_said.pop(exp["id"], None)

    def steering(self) -> None:
        """The steering commands applied since the last look."""
        # Read the commands only when this engine applied one since (it reports only its
        # own): the read of the newest 200 was half of a tick.
        applied = getattr(self.host, "applied", None)
        if applied is None or applied != self.applied_seen:
            for command in liveness.applied_commands(self.store, self.commands_seen,
                                                     set(self.host.loops)):
                self.commands_seen = command["id"]
                self.out(f"{self._prefix(command['run_id'])}steering: "
                         f"{liveness.describe_command(command)}")
            self.applied_seen = applied

    def tick(self, now: float | None = None) -> None:
        """Applied steering commands, then liveness of long evaluations."""
        now = time.time() if now is None else now
        self.steering()
        for item in liveness.running(self.store, now, LIVE_AFTER_S):
            if item.run_id not in self.host.loops or item.elapsed_s < LIVE_AFTER_S:
                continue
            if now - self.live_said.get(item.experiment_id, 0.0) < LIVE_EVERY_S:
                continue
            self.live_said[item.experiment_id] = now
            what = "baseline" if item.kind == "baseline" else f"round {item.round}"
            last = f" · {item.last_line}" if item.last_line else " · no output yet"
            self.out(f"{self._prefix(item.run_id)}… {what} evaluating for "
                     f"{item.elapsed_s:.0f}s{last}")

    async def ticking(self) -> None:
        while True:
            await cadence.beat(TICK_S)
            try:
                self.tick()
            except (sqlite3.Error, OSError):
                pass  # the store is busy or full: the runs say so themselves


def _last_id(store: Any, run_id: int) -> int:
    rows = store.experiments(run_id, newest_first=True, limit=1)
    return rows[0]["id"] if rows else 0


async def run_headless(db: Path, spec_paths: list[str], out: TextIO | None = None,
                       prepare: Callable[[list[Any]], list[Any]] | None = None,
                       err: TextIO | None = None) -> int:
    """Host the runs, print them, stop cleanly on Ctrl-C/SIGTERM or a closed stdout.
    Raises BrokenPipeError at the end if stdout's reader went away (the CLI exits quietly)."""
    from engine import library
    from engine.host import Host
    from engine.store import Store
    from engine.templates import load_runnable

    host: Host | None = None
    interrupts: list[float] = []
    write_out = Printer(out or sys.stdout, on_closed=lambda: stop())
    write_err = Printer(err or sys.stderr)

    def stop() -> None:
        interrupts.append(time.monotonic())
        if host is not None:
            host.stop_all()

    def on_signal() -> None:
        now = time.monotonic()
        if interrupts and now - interrupts[-1] < FORCE_WITHIN_S and host is not None:
            write_err("\nforced stop")
            for task in host.tasks.values():
                task.cancel()
            return
        write_err("\nstopping after recording (Ctrl-C again within 2 s forces)")
        stop()

    loop = asyncio.get_running_loop()
    for sig in signals.STOP_SIGNALS:  # first: a stop at any moment from here on is clean
        loop.add_signal_handler(sig, on_signal)
    for _ in signals.take_early()[:1]:  # one that came while Python was starting
        on_signal()
    try:
        specs = []
        for path in spec_paths:
            spec, note = load_runnable(path, db)  # a shipped template runs on a copy
            if note:
                write_err(printable(note, one_line=True))
            specs.append(spec)
        loaded, specs = specs, library.expand_all(specs)  # a library: one run per file
        if prepare is not None:
            specs = prepare(specs)
        store = Store(db)
        host = Host(store)
        for spec in specs:
            host.add(spec)
        watcher = asyncio.create_task(library.LibraryWatcher(host, loaded).run())
        if interrupts:
            host.stop_all()  # asked to stop while starting: the runs record that and end
        view = HeadlessView(host, write_out, write_err)
        host.listeners.append(view.soon)
        ticker = asyncio.create_task(view.ticking(), name="headless-ticker")
        try:
            results = await host.run_until_done()
        finally:
            ticker.cancel()
            watcher.cancel()
            view.report()
            view.tick()
    finally:
        for sig in signals.STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    from engine.export import held_out_line

    failed = 0
    for run_id, reason in results.items():
        run = store.get_run(run_id)
        write_out(f"[{run['name']}] {run['status']}: {printable(reason, one_line=True)} · "
                  f"baseline {_fmt(run['baseline_score'])} → best {_fmt(run['best_score'])}"
                  f"{held_out_line(store, run)}")
        failed += run["status"] == "failed"
    store.close()
    if write_out.closed:
        raise BrokenPipeError("stdout's reader went away")
    return 1 if failed else 0
