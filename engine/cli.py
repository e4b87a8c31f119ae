"""The headless commands: check, run --headless, export, status, demo --headless.

User mistakes raise UserError and are printed as one line by the CLI edge (tui/cli.py);
nothing here prints a traceback for them.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import TextIO

from engine.export import FORMATS, status_json
from engine.headless import run_headless
from engine.model import UserError
from engine.store import Store
from engine.text import printable

__all__ = ["cmd_check", "cmd_demo_headless", "cmd_export", "cmd_status", "run_headless"]


def cmd_check(paths: list[str], out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout  # now's, not import's
    # Imported here: `status` and `export` are filters that must start fast, and the
    # spec's models take most of a CLI start to build.
    from engine import library
    from engine.evaluators.metric import metric_notes
    from engine.llm import llm_warnings
    from engine.spec import check_notes, checklist_warnings, load_spec
    from engine.speccheck import check_deeper

    for path in paths:
        spec = load_spec(path)
        runs = library.expand(spec)  # a library spec: one run per file its glob matches
        for one in runs:  # each run's own file and commands
            check_deeper(one, Path(path).read_text(encoding="utf-8"))
        for warning in checklist_warnings(spec) + llm_warnings(spec):
            print(f"warning: {printable(warning, one_line=True)}", file=sys.stderr)
        what = (f"run {spec.name!r}" if spec.target.each is None else
                f"{len(runs)} runs ({', '.join(r.name for r in runs[:3])}"
                f"{', ...' if len(runs) > 3 else ''})")
        print(f"{printable(str(path), one_line=True)}: ok — {what}, "
              f"{spec.evaluate.kind} evaluator, "
              f"{spec.mutator.kind} mutator, {sum(w.slots for w in spec.workers)} worker slot(s)",
              file=out)
        for note in check_notes(spec) + metric_notes(spec):
            print(f"  {note}", file=out)
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def cmd_export(db: Path, run_name: str, fmt: str, output: str | None,
               out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout  # now's, not import's
    store = Store(db, readonly=True)
    run = store.get_run(run_name)
    if run is None:
        names = ", ".join(r["name"] for r in store.runs()) or "none yet"
        raise UserError(f"no run named {run_name!r} in {db} (runs: {names})")
    if fmt == "playbook":
        from engine import playbook

        if playbook.needs_key():  # the deterministic part, and one line about the rest
            lines = iter([playbook.changelog_playbook(store, run)])
            print(f"note: {playbook.NEEDS_KEY}", file=sys.stderr)
        else:
            lines = playbook.export_playbook(store, run)
    elif fmt in FORMATS:
        lines = FORMATS[fmt](store, run)
    else:
        raise UserError(f"unknown format {fmt!r}; use {', '.join(FORMATS)} or playbook")
    if output:
        Path(output).write_text("".join(lines), encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    else:
        # To a terminal, text from outside (descriptions, reasons, diffs) is shown, never
        # obeyed; into a pipe or file the export is the data as recorded.
        shown = printable if _is_terminal(out) else _as_is
        for line in lines:
            out.write(shown(line))
    return 0


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _as_is(text: str) -> str:
    return text


#: Statuses of a run whose engine is working on it; with no engine alive, it was killed.
LIVE_STATUSES = ("starting", "running", "paused")


def cmd_status(db: Path, as_json: bool, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout  # now's, not import's
    store = Store(db, readonly=True)
    rows = status_json(store)
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    if not rows:
        print(f"no runs in {printable(str(db), one_line=True)}", file=out)
    spec_paths = {r["name"]: r["spec_path"] for r in store.runs()}
    for r in rows:
        status = r["status"]
        why = f"  ({r['stop_reason']})" if r["stop_reason"] else ""
        if r.get("waiting") and status in LIVE_STATUSES:  # a library's scheduler says why
            why = f"  ({r['waiting']})"
        if status in LIVE_STATUSES and not r["engine_alive"]:
            # A killed engine cannot say so itself: the lock it held is gone.
            status, why = "interrupted", f"  — resume with {resume_command(db, spec_paths[r['name']])}"
        line = (f"{r['name']:<24} {status:<11} rounds {r['rounds']:>4}  "
                f"baseline {_fmt(r['baseline'])} → best {_fmt(r['best'])}  " +
                (f"held out {_fmt(r['holdout_baseline'])} → {_fmt(r['holdout_best'])}  "
                 if r["holdout_baseline"] is not None else "") +
                f"${r['cost_usd']:.4f}" + (f" (${r['cost_estimated_usd']:.4f} estimated)"
                                           if r["cost_estimated_usd"] else "") + why)
        print(printable(line, one_line=True), file=out)
    return 0


def resume_command(db: Path, spec_path: str | None) -> str:
    """The command that picks a run up again: `autoresearch-tui [--db DB] run SPEC`."""
    words = ["autoresearch-tui"]
    if db != Path("autoresearch.db"):
        words += ["--db", str(db)]
    words += ["run", spec_path or "SPEC"]
    return " ".join(shlex.quote(w) for w in words)


def cmd_demo_headless(db: Path, workdir: Path | None, out: TextIO | None = None, *,
                      fresh: bool = False) -> int:
    out = out if out is not None else sys.stdout  # now's, not import's
    from engine import demo

    spec_paths, resumed = demo.prepare_or_resume(db, workdir, fresh=fresh)
    where = printable(str(Path(spec_paths[0]).parent), one_line=True)
    print(f"resuming the unfinished demo in {where} (`demo --fresh` starts a new one)"
          if resumed else f"demo workspaces in {where}", file=out, flush=True)
    return asyncio.run(run_headless(db, [str(p) for p in spec_paths], out))
