"""The headless commands: check, run --headless, export, status, demo --headless.

User mistakes raise UserError and are printed as one line by the CLI edge (tui/cli.py);
nothing here prints a traceback for them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from engine import demo, library
from engine.export import FORMATS, status_json
from engine.host import Host
from engine.model import UserError
from engine.spec import checklist_warnings, load_spec
from engine.store import Store


def cmd_check(paths: list[str], out: TextIO = sys.stdout) -> int:
    from engine.llm import llm_warnings

    for path in paths:
        spec = load_spec(path)
        for warning in checklist_warnings(spec) + llm_warnings(spec):
            print(f"warning: {warning}", file=sys.stderr)
        runs = library.expand(spec)  # a library spec: one run per file its glob matches
        what = (f"run {spec.name!r}" if spec.target.each is None else
                f"{len(runs)} runs ({', '.join(r.name for r in runs[:3])}"
                f"{', ...' if len(runs) > 3 else ''})")
        print(f"{path}: ok — {what}, {spec.evaluate.kind} evaluator, "
              f"{spec.mutator.kind} mutator, {sum(w.slots for w in spec.workers)} worker slot(s)",
              file=out)
    return 0


def _line(exp: dict) -> str:
    score = "-" if exp["score"] is None else f"{exp['score']:.4g}"
    delta = "" if exp["delta"] is None else f" ({exp['delta']:+.4g})"
    return (f"round {exp['round']:>3}  {exp['verdict']:<11} {score:>8}{delta:<12} "
            f"{exp['description']}" + (f"  — {exp['reason']}" if exp["verdict"] not in
                                       ("baseline", "kept") and exp["reason"] else ""))


async def run_headless(db: Path, spec_paths: list[str], out: TextIO = sys.stdout,
                       prepare=None) -> int:
    """Host the runs, print one line per finished experiment, stop cleanly on Ctrl-C/SIGTERM."""
    loaded = [load_spec(p) for p in spec_paths]
    specs = library.expand_all(loaded)  # a library spec: one run per matching file
    if prepare is not None:
        specs = prepare(specs)
    store = Store(db)
    host = Host(store)
    for spec in specs:
        host.add(spec)
    watcher = asyncio.create_task(library.LibraryWatcher(host, loaded).run(), name="library")
    printed: dict[int, int] = {rid: _last_finished(store, rid) for rid in host.loops}

    alerts: dict[int, str | None] = {}
    seen: dict[int, int] = {}
    scheduled: list[bool] = [False]

    def report() -> None:
        # Only the runs that changed since the last report are read (a library hosts
        # hundreds): reading every run on every change made a round's cost grow with them.
        scheduled[0] = False
        for run_id in host.changed_since(seen):
            run_loop = host.loops.get(run_id)
            if run_loop is None:
                continue
            if run_loop.alert != alerts.get(run_id):
                alerts[run_id] = run_loop.alert
                if run_loop.alert:
                    print(f"[{run_loop.spec.name}] {run_loop.alert}", file=sys.stderr, flush=True)
            if run_id not in printed:  # joined while the host runs (a library's new file)
                printed[run_id] = 0
            for exp in store.experiments(run_id, after_id=printed[run_id]):
                if exp["verdict"] == "running":
                    break
                prefix = f"[{host.loops[run_id].spec.name}] " if len(host.loops) > 1 else ""
                print(prefix + _line(exp), file=out, flush=True)
                printed[run_id] = exp["id"]

    loop = asyncio.get_running_loop()

    def soon() -> None:  # changes in one pass of the event loop: one report
        if not scheduled[0]:
            scheduled[0] = True
            loop.call_soon(report)

    host.listeners.append(soon)
    interrupts: list[float] = []

    def on_signal() -> None:
        now = time.monotonic()
        if interrupts and now - interrupts[-1] < 2:
            print("\nforced stop", file=sys.stderr)
            for task in host.tasks.values():
                task.cancel()
            return
        interrupts.append(now)
        print("\nstopping after recording (Ctrl-C again within 2 s forces)", file=sys.stderr)
        host.stop_all()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        results = await host.run_until_done()
    finally:
        watcher.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        report()
    failed = 0
    for run_id, reason in results.items():
        run = store.get_run(run_id)
        print(f"[{run['name']}] {run['status']}: {reason} · baseline {_fmt(run['baseline_score'])}"
              f" → best {_fmt(run['best_score'])}", file=out, flush=True)
        failed += run["status"] == "failed"
    store.close()
    return 1 if failed else 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _last_finished(store: Store, run_id: int) -> int:
    rows = store.experiments(run_id, newest_first=True, limit=1)
    return rows[0]["id"] if rows else 0


def cmd_export(db: Path, run_name: str, fmt: str, output: str | None,
               out: TextIO = sys.stdout) -> int:
    store = Store(db, readonly=True)
    run = store.get_run(run_name)
    if run is None:
        names = ", ".join(r["name"] for r in store.runs()) or "none yet"
        raise UserError(f"no run named {run_name!r} in {db} (runs: {names})")
    if fmt == "playbook":
        from engine.playbook import export_playbook

        lines = export_playbook(store, run)
    elif fmt in FORMATS:
        lines = FORMATS[fmt](store, run)
    else:
        raise UserError(f"unknown format {fmt!r}; use md, tsv, jsonl or playbook")
    if output:
        Path(output).write_text("".join(lines), encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    else:
        for line in lines:
            out.write(line)
    return 0


def cmd_status(db: Path, as_json: bool, out: TextIO = sys.stdout) -> int:
    store = Store(db, readonly=True)
    rows = status_json(store)
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    if not rows:
        print(f"no runs in {db}", file=out)
    for r in rows:
        print(f"{r['name']:<24} {r['status']:<9} rounds {r['rounds']:>4}  "
              f"baseline {_fmt(r['baseline'])} → best {_fmt(r['best'])}  "
              f"${r['cost_usd']:.4f}" + (f"  ({r['stop_reason']})" if r["stop_reason"] else ""),
              file=out)
    return 0


def cmd_demo_headless(db: Path, workdir: Path | None, out: TextIO = sys.stdout) -> int:
    spec_paths = demo.prepare(db, workdir)
    print(f"demo workspaces in {Path(spec_paths[0]).parent}", file=out, flush=True)
    return asyncio.run(run_headless(db, [str(p) for p in spec_paths], out))
