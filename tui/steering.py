"""The keys: steering (pause, veto, pin, stop, guidance) and the rest (new run, export, filter,
details, help, quit), with the same actions in the command palette. Screens and dialogs are
imported when first opened (the first screen comes up sooner).

Every steering action writes a command row to the store, whether the engine runs in this
process or headless elsewhere; the engine applies it and records the result, which the
poll shows in the changelog (⚑ rows), the status line and a notification.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen

from engine.actions import ACTIONS
from engine.export import FORMATS
from engine.model import BASELINE, KEPT, PINNED, RUNNING
from tui.changelog_pane import Changelog
from tui.safe import line, markup
from tui.summary import LIVE

if TYPE_CHECKING:
    from engine.spec import Spec
    from tui.app import AutoresearchApp

#: A second Ctrl-C (or q) within this many seconds forces the engine to stop.
FORCE_WINDOW_S = 2.0
#: A command the store's lock held back is tried again this often, for at most this long.
UNSENT_RETRY_S = 0.002
UNSENT_GIVE_UP_S = 30.0

#: The keys, from the one table of actions (engine/actions.py) that also makes the help
#: screen, the command palette and the CLI's steering verbs.
BINDINGS = [
    *[Binding(a.key, a.name, a.label, id=a.name, tooltip=a.description[:1].upper() +
              a.description[1:], show=a.footer) for a in ACTIONS],
    Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True),
    Binding("left_square_bracket", "step_run(-1)", "Previous run", show=False),
    Binding("right_square_bracket", "step_run(1)", "Next run", show=False),
    *[Binding(str(i), f"pane('{p}')", p.title(), show=False)
      for i, p in enumerate(("runs", "changelog", "chart", "checklist", "workers"), 1)],
]

def export_format(path: Path) -> str | None:
    """The export format a file name asks for: `.md`, `.tsv`, `.jsonl` (ours), `results.tsv`
    or `NAME.results.tsv` (autoresearch's results-tsv), `log.jsonl` or `NAME.pi.jsonl` (pi's
    pi-jsonl, as `.auto/log.jsonl`); None for anything else."""
    name = path.name.lower()
    if name == "results.tsv" or name.endswith(".results.tsv"):
        return "results-tsv"
    if name == "log.jsonl" or name.endswith(".pi.jsonl"):
        return "pi-jsonl"
    fmt = path.suffix.lstrip(".").lower() or "md"
    return fmt if fmt in FORMATS and "-" not in fmt else None


#: Actions that need a selected run.
RUN_ACTIONS = {a.name for a in ACTIONS if a.needs_run}


class SteeringActions:
    """Mixed into the app: actions, their enabled state, and the command palette entries."""

    #: A retry of the person's queued writes is under way (see _retry_unsent).
    _retrying = False

    def _app(self) -> AutoresearchApp:
        return self  # type: ignore[return-value]

    # ------------------------------------------------------------ what is possible now

    def selected(self) -> dict[str, Any] | None:
        """The changelog's selected experiment (light row), if the cursor is on one."""
        app = self._app()
        try:
            exp_id = app.dash.query_one(Changelog).selected_experiment()
        except NoMatches:  # the app is closing: its widgets are going
            return None
        detail = app.board.detail
        if exp_id is None or detail is None:
            return None
        point = detail.points.get(exp_id)
        if point is None:
            return None
        return {"id": exp_id, "round": point[0], "verdict": point[1], "score": point[2]}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        app = self._app()
        if action not in RUN_ACTIONS and action not in ("new_run", "help"):
            return True
        if isinstance(app.screen, ModalScreen):
            return False  # a dialog is open: its keys only
        one_experiment = getattr(app.screen, "exp_id", None) is not None
        if one_experiment and action in ("filter", "export", "new_run", "tree"):
            return False  # dashboard keys, hidden while one experiment is open
        if action in ("new_run", "help"):
            return True
        run = app.board.runs.get(app.selected_run) if app.selected_run is not None else None
        if run is None:
            return None
        live = run["status"] in LIVE
        if action == "pause":
            return None if not live else run["status"] != "paused"
        if action == "resume":
            return run["status"] == "paused"
        if action in ("stop_run", "guide"):
            return True if live else None
        if action == "veto" and not one_experiment and self.in_flight_veto():
            return True if live else None
        if action in ("veto", "pin"):
            if not one_experiment:
                row = self.selected()
                if row is None or row["verdict"] == BASELINE and action == "veto":
                    return None
                if action == "pin" and (row["verdict"] == RUNNING or row["score"] is None):
                    return None
            return True if live else None
        return True

    # ------------------------------------------------------------ sending

    def send(self, verb: str, target: int | None = None, argument: str | None = None) -> None:
        app = self._app()
        run_id = app.selected_run
        if run_id is None:
            return
        app.board.send(run_id, verb, target, argument)
        if app.board.unsent:
            self._retry_unsent()
        what = verb + (f" #{target}" if target is not None else
                       " (the experiment in flight)" if verb == "veto" else "")
        app.last_command = Text(f"{what}: sent, waiting for the engine…", style="italic")
        run = app.board.runs[run_id]
        if app.alive.get(run_id) is False:
            app.notify(f"No engine is running {markup(run['name'])}: the command waits in the store "
                       "until one does.", severity="warning")
        app._show_status()
        app.call_later(app.poll)

    def write_soon(self, write: Callable[[], object]) -> None:
        """A write of the person's other than a command (a label): now, or as soon as the
        store's lock is free, never blocking this loop (see Board.write)."""
        app = self._app()
        if not app.board.write(write):
            self._retry_unsent()

    def _retry_unsent(self) -> None:
        """Start retrying what waits in the board's queue, unless a retry is under way (it
        writes everything queued, oldest first)."""
        if not self._retrying:
            self._retrying = True
            self._send_later(time.monotonic())

    def _send_later(self, since: float) -> None:
        """Writes the store's lock held back: an engine in this process lets go of it
        between rounds, so try again every few milliseconds (without blocking this loop)."""
        app = self._app()
        if app.board.send_unsent():
            self._retrying = False
            app.call_later(app.poll)
        elif time.monotonic() - since > UNSENT_GIVE_UP_S:
            self._retrying = False
            app.board.unsent.clear()
            app.notify("The store stayed locked: what you sent was not written. Try again.",
                       severity="error")
        else:
            app.set_timer(UNSENT_RETRY_S, lambda: self._send_later(since))

    def _command_applied(self, command: dict[str, Any]) -> None:
        app = self._app()
        what = command["verb"] + (f" #{command['target']}" if command["target"] else "")
        if command["id"] in app.board.mine:
            app.last_command = Text(f"{what} → applied: {line(command['result'])}",
                                    style="bold")
            app.notify(f"applied: {markup(command['result'])}", title=what, timeout=4)

    # ------------------------------------------------------------ steering keys

    def action_pause(self) -> None:
        self.send("pause")

    def action_resume(self) -> None:
        self.send("resume")

    def in_flight_veto(self) -> bool:
        """`v` means "the experiment in flight": the cursor follows the newest row (the
        person has not picked one) and the run has one in flight. The engine vetoes what is
        in flight when it applies the command and says which, so a row that streamed in just
        before the key is never mistaken for another (issue 12)."""
        app = self._app()
        try:
            following = app.dash.query_one(Changelog).table.following
        except NoMatches:
            return False
        return following and any(r["run_id"] == app.selected_run
                                 for r in app.board.running.values())

    def action_veto(self) -> None:
        if self.in_flight_veto():
            self.send("veto")
            return
        row = self.selected()
        if row is not None:
            self.steer_experiment("veto", row["id"])

    def action_pin(self) -> None:
        row = self.selected()
        if row is not None:
            self.steer_experiment("pin", row["id"])

    def steer_experiment(self, verb: str, exp_id: int) -> None:
        """Veto or pin one experiment; reverting a kept one asks first."""
        from tui.dialogs import ConfirmScreen

        app = self._app()
        detail = app.board.detail
        point = detail.points.get(exp_id) if detail else None
        if verb == "veto" and point is not None and point[1] == KEPT:
            later = [i for i, p in detail.points.items() if i > exp_id and p[1] in (KEPT, PINNED)]
            detail_text = (f"It is reverted, with the {len(later)} kept experiment(s) built on it."
                           if later else "The best version goes back to the one before it.")

            def answered(yes: bool | None) -> None:
                if yes:
                    self.send("veto", exp_id)

            app.push_screen(ConfirmScreen(f"Veto kept experiment #{exp_id}?", detail_text),
                            answered)
            return
        self.send(verb, exp_id)

    def action_stop_run(self) -> None:
        from tui.dialogs import ConfirmScreen

        app = self._app()
        run = app.board.runs[app.selected_run]

        def answered(yes: bool | None) -> None:
            if yes:
                self.send("stop")

        app.push_screen(ConfirmScreen(f"Stop run {run['name']}?",
                                      "The experiment in flight is recorded as interrupted; "
                                      "running the spec again resumes."), answered)

    def action_guide(self) -> None:
        from engine.mutators import reads_guidance
        from tui.dialogs import PromptScreen

        app = self._app()
        spec = app.board.specs.get(app.selected_run, {}) if app.selected_run else {}
        kind = (spec.get("mutator") or {}).get("kind") or "llm"
        hint = "enter: send    esc: cancel"
        if not reads_guidance(kind):  # say what will happen to it (issue 12)
            hint = (f"The {kind} mutator does not read guidance: it is recorded in the "
                    f"changelog but will not change the next proposals.\n{hint}")

        def answered(text: str | None) -> None:
            if text:
                self.send("guide", argument=text)

        app.push_screen(PromptScreen("Guidance for the mutator's next proposals", hint,
                                     placeholder="e.g. try smaller networks first"), answered)

    # ------------------------------------------------------------ the rest

    def action_filter(self) -> None:
        from tui.runs_pane import RunsPane

        app = self._app()
        runs = app.dash.query_one(RunsPane)
        if runs.has_focus_within or app.narrow and app.active_pane == "runs":
            runs.open_filter()  # the runs pane's own filter
            return
        if app.narrow:
            app.action_pane("changelog")
        app.dash.query_one(Changelog).open_filter()

    def action_export(self) -> None:
        from tui.dialogs import PromptScreen

        app = self._app()
        run = app.board.runs[app.selected_run]
        default = f"{run['name']}-changelog.md"

        def answered(path: str | None) -> None:
            if path:
                self.export(Path(path).expanduser())

        app.push_screen(PromptScreen(f"Export the changelog of {run['name']} to",
                                     "the name picks the format: .md, .tsv, .jsonl; "
                                     "results.tsv (autoresearch's), *.pi.jsonl (pi's)",
                                     value=default), answered)

    def export(self, path: Path) -> None:
        app = self._app()
        run = app.board.runs[app.selected_run]
        fmt = export_format(path)
        if fmt is None:
            app.notify(f"{markup(path)}: unknown format .{markup(path.suffix.lstrip('.'))}; "
                       "use .md, .tsv, .jsonl, results.tsv or NAME.pi.jsonl", severity="error")
            return
        try:
            with path.open("w", encoding="utf-8") as out:
                out.writelines(FORMATS[fmt](app.board.store, run))
        except OSError as exc:
            app.notify(markup(f"{path}: {exc.strerror or exc}"), severity="error")
            return
        app.notify(f"wrote {markup(path)}", title="export")

    def action_new_run(self) -> None:
        from tui.dialogs import NewRunScreen

        app = self._app()

        def chosen(spec: Spec | None) -> None:
            if spec is None:
                return
            run = next((r for r in app.board.runs.values() if r["name"] == spec.name), None)
            app._want_run = spec.name  # the view follows the run started (or found)
            if run is not None and run["status"] in LIVE and app.alive.get(run["id"]) is not False:
                where = "here" if app.engine and app.engine.hosts(run["id"]) else "in another engine"
                app.notify(f"run {markup(spec.name)} is already running {where}: showing it",
                           title="new run")
                app.call_later(app.poll)
                return
            app.ensure_engine().start(spec)
            if run is not None and run["status"] not in LIVE:
                reason = f" ({markup(run['stop_reason'])})" if run["stop_reason"] else ""
                app.notify(f"run {markup(spec.name)} is {run['status']}{reason}: starting it "
                           "again resumes it, and it goes on only if the spec now allows more "
                           "(a larger stop: max_rounds, max_minutes or max_cost_usd). For a "
                           "fresh run, give the spec a new name.", title="resuming",
                           timeout=12)
            else:
                app.notify(f"starting {markup(spec.name)}", title="new run")

        app.push_screen(NewRunScreen(Path.cwd()), chosen)

    def action_help(self) -> None:
        from tui.help_screen import HelpScreen

        self._app().push_screen(HelpScreen())

    def open_experiment(self, exp_id: int) -> None:
        from tui.experiment_screen import ExperimentScreen

        app = self._app()
        run = app.board.runs[app.selected_run]
        app.push_screen(ExperimentScreen(app.board.store, exp_id, run["direction"], run["name"]))

    def action_sort_runs(self) -> None:
        from tui.runs_pane import RunsPane

        self._app().dash.query_one(RunsPane).cycle_sort()

    def action_tree(self) -> None:
        from tui.tree_screen import TreeScreen

        app = self._app()
        if app.selected_run is not None and app.screen is app.dash:
            app.push_screen(TreeScreen(app.selected_run))

    def action_step_run(self, by: int) -> None:
        from tui.runs_pane import RunsPane

        self._app().dash.query_one(RunsPane).step(by)

    # ------------------------------------------------------------ quitting

    async def action_quit(self) -> None:
        await self._quit(forced_by_repeat=False)

    async def action_interrupt(self) -> None:
        await self._quit(forced_by_repeat=True)

    async def _quit(self, forced_by_repeat: bool) -> None:
        """Stop hosted runs cleanly and leave; a second Ctrl-C within 2 s forces."""
        app = self._app()
        engine = app.engine
        if engine is None or not engine.active():
            app.exit(0)
            return
        now = time.monotonic()
        last = getattr(self, "_quit_at", None)
        if last is not None and forced_by_repeat and now - last < FORCE_WINDOW_S:
            engine.force()
            app.exit(return_code=130)
            return
        if last is None:
            self._quit_at = now
            engine.stop_all()
            app.notify("Stopping the runs cleanly… (Ctrl-C again within 2 s forces)",
                       title="quit", timeout=10)
            app.set_interval(0.1, self._exit_when_stopped)
        else:
            self._quit_at = now

    def _exit_when_stopped(self) -> None:
        app = self._app()
        if app.engine is None or not app.engine.active():
            app.exit(0)

    # ------------------------------------------------------------ command palette

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        app = self._app()
        for command in super().get_system_commands(screen):  # type: ignore[misc]
            if command.title != "Keys":  # ours (below) is the full list; one "Keys" only
                yield command
        for action in ACTIONS:
            if action.name == "resume":
                continue  # one entry for both: p does whichever applies
            if action.name == "pause":
                title, callback = "Pause or resume the run", (
                    lambda: app.action_resume() if app.check_action("resume", ())
                    else app.action_pause())
            else:
                title, callback = action.title, getattr(app, f"action_{action.name}")
            key = app.get_key_display(Binding(action.key, action.name))
            yield SystemCommand(title, f"{key}: {action.description}", callback)
