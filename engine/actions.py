"""The actions a person can take on a run, in one table: the app's keys, its footer (which
drops the least important first when the terminal is narrow), its help screen, its command
palette and the CLI's steering verbs are all made from it, so they cannot drift apart.

No Textual here (engine/ never imports it): the app turns each row into a `Binding`. The
steering verbs write the same command rows the keys write (`send`), which an engine —
in the app or headless — applies within a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from engine.model import UserError


@dataclass(frozen=True)
class Action:
    """One thing a person can do."""

    #: The app's action name (`action_<name>`).
    name: str
    #: The key, as Textual names it ("p", "slash", "question_mark").
    key: str
    #: The footer's word.
    label: str
    #: One line for the help screen and the command palette.
    description: str
    #: Lower is more important: a narrow footer drops the highest numbers first.
    priority: int
    #: Needs a selected run / a selected experiment in the app.
    needs_run: bool = True
    needs_experiment: bool = False
    #: The command verb it writes (and the CLI verb that writes the same), if it steers.
    verb: str | None = None
    #: Its name in the command palette.
    title: str = ""
    #: The CLI verb's arguments after the verb.
    cli_args: str = "RUN"
    #: Shown in the footer (the others only in help and the palette).
    footer: bool = True

    @property
    def cli(self) -> str | None:
        """The CLI that does the same (`autoresearch-tui veto RUN [EXP]`), if any."""
        return f"autoresearch-tui {self.verb} {self.cli_args}" if self.verb else None


ACTIONS: tuple[Action, ...] = (
    Action("pause", "p", "Pause", "pause the run (the experiment in flight finishes first)",
           1, verb="pause", title="Pause the run"),
    Action("resume", "p", "Resume", "resume the paused run", 1, verb="resume",
           title="Resume the run"),
    Action("veto", "v", "Veto",
           "veto the selected experiment (nothing selected: the one in flight); a kept one is "
           "reverted with what was built on it; the idea is shown to the mutator as banned",
           3, needs_experiment=True, verb="veto", cli_args="RUN [EXP]",
           title="Veto the selected experiment"),
    Action("pin", "i", "Pin",
           "pin the selected experiment: keep it whatever its score, safe from reverts",
           5, needs_experiment=True, verb="pin", cli_args="RUN EXP",
           title="Pin the selected experiment"),
    Action("stop_run", "s", "Stop", "stop the run (asks first; running the spec resumes it)",
           4, verb="stop", title="Stop the run"),
    Action("guide", "g", "Guide", "guidance: free text for the mutator's next proposals",
           4, verb="guide", cli_args="RUN TEXT", title="Guidance for the mutator"),
    Action("export", "e", "Export",
           "export the changelog (.md, .tsv or .jsonl by the file name)", 8,
           title="Export the changelog"),
    Action("filter", "slash", "Filter",
           "filter the changelog (enter keeps the filter, esc clears it)", 6,
           title="Filter the changelog"),
    Action("tree", "t", "Tree",
           "the version tree: every experiment under its parent, the frontier and the best "
           "marked; enter opens one, v and i veto and pin it", 6, title="Show the version tree",
           footer=False),
    Action("label", "l", "Label",
           "label the run's judged answers yes/no, most informative first (as `autoresearch-tui "
           "label RUN`); in an experiment's Evidence tab y/n label the selected answer", 9,
           title="Label the judge's answers", footer=False),
    Action("new_run", "n", "New", "start a run from a spec in checklists/ (or any path)", 7,
           needs_run=False, title="Start a run from a spec"),
    Action("help", "question_mark", "Help", "every key, and how steering reaches the engine",
           2, needs_run=False, title="Keys"),
    Action("quit", "q", "Quit",
           "quit; runs hosted here stop cleanly first (attached: the engine keeps running)",
           0, needs_run=False, title="Quit"),
)

BY_NAME = {a.name: a for a in ACTIONS}
#: The steering verbs, as the CLI spells them (`autoresearch-tui pause RUN`).
VERBS = tuple(dict.fromkeys(a.verb for a in ACTIONS if a.verb))


def priority(name: str, default: int = 5) -> int:
    """How important an action is for a narrow footer (unknown ones sit in the middle)."""
    action = BY_NAME.get(name)
    return action.priority if action else default


# ------------------------------------------------------------ the CLI's steering verbs

#: How long a steering verb waits to print what the engine did with it.
APPLY_WAIT_S = 5.0


def send(db: Path, run_name: str, verb: str, target: int | None = None,
         argument: str | None = None, wait_s: float = APPLY_WAIT_S) -> tuple[int, str]:
    """Write one steering command for `run_name` (the same row the app's key writes) and
    wait a little for an engine to apply it. Returns (exit status, one line for a person)."""
    from engine.host import engine_alive
    from engine.store import Store
    from engine.text import printable

    if verb not in VERBS:
        raise UserError(f"unknown command {verb!r} (one of: {', '.join(VERBS)})")
    if not db.exists():
        raise UserError(f"{db}: no such store (pass --db, or start a run first)")
    store = Store(db)
    try:
        run = next((r for r in store.runs() if r["name"] == run_name), None)
        if run is None:
            names = ", ".join(r["name"] for r in store.runs()) or "none yet"
            raise UserError(f"{db}: no run named {run_name!r} (runs: {names})")
        if target is not None and (store.experiment(target) or {}).get("run_id") != run["id"]:
            raise UserError(f"{run_name}: no experiment #{target} in this run")
        cid = store.add_command(run["id"], verb, target=target, argument=argument)
        assert cid is not None
        what = verb + (f" #{target}" if target is not None else "")
        if not engine_alive(db, run_name):
            if run["status"] in ("done", "stopped", "failed"):
                return 0, (f"{what}: written; {run_name} is {run['status']}, so it waits in "
                           "the store until the run is started again")
            return 0, (f"{what}: written; no engine is running {run_name} now, so it waits "
                       "in the store until one does")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            row = store.command(cid)
            if row and row["applied"] is not None:
                return 0, f"{what}: {printable(row['result'], one_line=True)}"
            time.sleep(0.05)
        return 0, f"{what}: written; the engine has not applied it yet (it will)"
    finally:
        store.close()
