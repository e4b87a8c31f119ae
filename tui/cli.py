"""The `autoresearch-tui` command line: the one edge where user errors become one-line messages.

Headless commands go to engine/cli.py and never import Textual; the app is imported only
when a screen is wanted.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

from engine import signals
from engine.model import UserError

#: The steering verbs (engine/actions.py: the same table as the app's keys).
STEER = ("pause", "resume", "stop", "veto", "pin", "guide")
COMMANDS = ("check", "run", "export", "status", "demo", "attach", "import", "judge-report", "judge-agreement",
            "label", "serve",
            *STEER)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoresearch-tui",
        description="Run and steer autoresearch loops. With spec files and no command, hosts "
                    "those runs in the app; with nothing, opens the app on the store.")
    parser.add_argument("--db", type=Path, default=Path("autoresearch.db"),
                        help="the SQLite store (default ./autoresearch.db)")
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser("check", help="validate specs")
    check.add_argument("specs", nargs="+")
    run = sub.add_parser("run", help="run specs")
    run.add_argument("specs", nargs="+")
    run.add_argument("--headless", action="store_true", help="no app: one line per experiment")
    export = sub.add_parser("export", help="export a run's changelog")
    export.add_argument("run")
    export.add_argument("--format", default="md", choices=[
        "md", "tsv", "jsonl", "results-tsv", "pi-jsonl", "playbook"])
    export.add_argument("-o", "--output", help="write to a file instead of stdout")
    imp = sub.add_parser("import", help="a results.tsv or .auto/log.jsonl into a run's changelog")
    imp.add_argument("file")
    imp.add_argument("--run", help="the run to import into (made if new)")
    imp.add_argument("--spec", help="or the spec whose run it is (made as `run` would)")
    status = sub.add_parser("status", help="every run's state")
    status.add_argument("--json", action="store_true")
    demo = sub.add_parser("demo", help="the offline demo: two real loops")
    demo.add_argument("--headless", action="store_true")
    demo.add_argument("--workdir", type=Path, help="where the demo's copies go")
    demo.add_argument("--fresh", action="store_true",
                      help="a new demo, even if the last one did not finish (it is resumed)")
    attach = sub.add_parser("attach", help="watch and steer a headless engine through the store")
    report = sub.add_parser("judge-report", help="the judge against a person's labels, per item")
    report.add_argument("run")
    report.add_argument("--rejudge", action="store_true",
                        help="ask the spec's judge again on every labelled output")
    agreement = sub.add_parser("judge-agreement",
                               help="a rubric's agreement with a run's labels (a metric)")
    agreement.add_argument("run")
    agreement.add_argument("rubric", type=Path, help="YAML: item name → question")
    label = sub.add_parser("label", help="label a run's judged answers yes/no (resumable)")
    label.add_argument("run")
    steer = []
    for verb, what in (("pause", "pause a run (the experiment in flight finishes first)"),
                       ("resume", "resume a paused run"), ("stop", "stop a run cleanly"),
                       ("veto", "veto an experiment (none given: the one in flight)"),
                       ("pin", "pin an experiment: keep it whatever its score"),
                       ("guide", "guidance for the mutator's next proposals")):
        p = sub.add_parser(verb, help=what + ", as the app's key does")
        p.add_argument("run")
        if verb in ("veto", "pin"):
            p.add_argument("experiment", type=int, nargs="?" if verb == "veto" else None)
        if verb == "guide":
            p.add_argument("text", nargs="+")
        steer.append(p)
    serve = sub.add_parser("serve", help="host every spec in a folder, following its changes")
    serve.add_argument("dir", type=Path)
    serve.add_argument("--poll", type=float, default=3.0, help="seconds between folder reads")
    for p in (check, run, export, imp, status, demo, attach, report, serve, *steer):
        p.add_argument("--db", type=Path, default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    signals.catch_early()  # first: a SIGTERM while Python imports is a clean stop too
    try:
        return _main(argv)
    except BrokenPipeError:
        # Every command is a Unix filter: when its reader goes away (`status | head -1`) it
        # exits quietly, with the status of a process ended by SIGPIPE (as `yes | head` does).
        _silence_output()
        return 128 + 13
    finally:
        signals.release_early()


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    specs, argv = _split_specs(argv)
    args = parser.parse_args(argv)
    if not (args.command in ("run", "demo") and args.headless):
        signals.release_early()  # only a headless engine stops on its own terms
    try:
        code = _dispatch(args, specs)
        # Flush here, inside main's handler: a reader that went away must surface as
        # BrokenPipeError now, not as a traceback at interpreter exit.
        sys.stdout.flush()
        return code
    except UserError as exc:
        _say(f"autoresearch-tui: {exc}")
        return 2
    except sqlite3.Error as exc:
        _say(f"autoresearch-tui: {args.db}: the store failed: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


def _say(line: str) -> None:
    """One line on stderr (it may itself be a closed pipe: then BrokenPipeError, handled above)."""
    from engine.text import printable  # quoted user text (U+2028, \r) cannot break the line

    print(printable(line, one_line=True), file=sys.stderr, flush=True)


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so the interpreter's own flush at exit (of text
    still buffered for the closed pipe) finds nothing to complain about."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass  # no such stream (closed at start) or not a real file: nothing to silence
    os.close(devnull)


def _split_specs(argv: list[str]) -> tuple[list[str], list[str]]:
    """`autoresearch-tui [--db PATH] SPEC [SPEC ...]`: with no command first, every positional
    word is a spec to host in the app; returns (specs, the remaining arguments)."""
    positions = []
    i = 0
    while i < len(argv):
        if argv[i] == "--db":
            i += 2
            continue
        if not argv[i].startswith("-"):
            positions.append(i)
        i += 1
    if not positions or argv[positions[0]] in COMMANDS:
        return [], argv
    return [argv[i] for i in positions], [a for i, a in enumerate(argv) if i not in positions]


def _dispatch(args: argparse.Namespace, specs: list[str]) -> int:
    if args.command in (None, "attach") or (args.command in ("run", "demo")
                                            and not args.headless):
        return _app(args, specs)  # the app imports the engine lazily: start fast
    from engine import cli

    db: Path = args.db
    if args.command == "check":
        done = cli.cmd_check(args.specs)
        from engine.labels import check_labels  # items the labels say the judge gets wrong

        check_labels(db, args.specs)
        return done
    if args.command == "export":
        return cli.cmd_export(db, args.run, args.format, args.output)
    if args.command == "import":
        from engine.history import cmd_import

        return cmd_import(db, args.file, args.run, args.spec)
    if args.command == "status":
        return cli.cmd_status(db, args.json)
    if args.command == "serve":
        from engine.serve import cmd_serve

        return cmd_serve(db, args.dir, args.poll)
    if args.command in STEER:  # the same command row the app's key writes
        from engine.actions import send

        code, said = send(db, args.run, args.command, getattr(args, "experiment", None),
                          " ".join(args.text) if args.command == "guide" else None)
        print(said)
        return code
    if args.command == "judge-report":
        from engine.labels import cmd_judge_report

        return cmd_judge_report(db, args.run, args.rejudge)
    if args.command == "judge-agreement":
        from engine.labels import cmd_judge_agreement

        return cmd_judge_agreement(db, args.run, args.rubric)
    if args.command == "label":
        from tui.label_screen import cmd_label

        return cmd_label(db, args.run)
    if args.command == "run" and args.headless:
        import asyncio

        return asyncio.run(cli.run_headless(db, args.specs))
    return cli.cmd_demo_headless(db, args.workdir, fresh=args.fresh)


def _app(args: argparse.Namespace, specs: list[str]) -> int:
    """Open the Textual app (hosting runs in-process, or attached to the store)."""
    try:
        from tui.app import make_app
    except ImportError as exc:  # the app is not built yet in this checkout
        raise UserError(f"the app is not available: {exc}") from None
    db: Path = args.db
    if args.command == "attach" and not db.exists():
        raise UserError(f"{db}: no such store to attach to (start an engine with "
                        "`autoresearch-tui run SPEC --headless`, or pass --db)")
    if args.command == "run":
        specs = args.specs
    if args.command == "demo":
        from engine import demo

        specs = [str(p) for p in demo.prepare(db, args.workdir, fresh=args.fresh)]
    loaded = []
    if specs:  # the engine's modules load only when there is something to run here
        from engine.templates import load_runnable

        for path in specs:
            spec, note = load_runnable(path, db)  # a shipped template runs on a copy
            if note:
                _say(note)
            loaded.append(spec)
        from engine.library import expand_all

        loaded = expand_all(loaded)  # a library: one run per file
    app = make_app(db, loaded, attach=args.command == "attach" or not loaded)
    app.run()
    return getattr(app, "return_code", 0) or 0
