"""The labelling screen (`autoresearch-tui label RUN`, or `l` in the app): one judged answer
at a time, chosen to be informative (engine/labelling.py), one key per answer.

`y` / `n` are the person's own answer to the item's question about the output shown — not
"the judge is right": the judge's answer is shown only after, so it cannot anchor the label.
`m` writes a note for the next label (enter keeps it), `s` skips, `q` / escape leaves. Every
label is written at once; answers already labelled are not asked again (resumable).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Input, Static

from engine.labelling import Sample, find_run, questions_of, queue, write_label
from engine.store import Store
from tui.board import written_soon
from tui.footer import LeanFooter
from tui.heading import Heading
from tui.safe import line, shown


class LabelScreen(Screen[None]):
    """Labels a run's judged answers, most informative first."""

    DEFAULT_CSS = """
    LabelScreen #label-question { height: auto; padding: 1 1 0 1; }
    LabelScreen VerticalScroll { height: 1fr; border: round $primary; }
    LabelScreen #label-output { padding: 0 1; width: 1fr; }
    LabelScreen Input { dock: bottom; margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("s", "skip", "Skip"),
        Binding("m", "note", "Note"),
        Binding("escape,q", "leave", "Back"),
    ]

    def __init__(self, store: Store, run_name: str, standalone: bool = False) -> None:
        super().__init__()
        self.store = store
        self.run = find_run(store, run_name)
        self.standalone = standalone
        self.samples: list[Sample] = []
        self.at = 0
        self.done = 0
        self.note = ""

    def compose(self) -> ComposeResult:
        yield Heading(id="label-head")
        yield Static(id="label-question")
        with VerticalScroll():
            yield Static(id="label-output")
        yield Input(placeholder="m: a note for this label (enter keeps it)", id="label-note")
        yield LeanFooter(compact=True, show_command_palette=False)  # keys never cut

    def on_mount(self) -> None:
        self.samples = queue(self.store, self.run)
        self.query_one(Input).can_focus = False  # `m` focuses it: y/n are keys, not text
        self._show()

    @property
    def current(self) -> Sample | None:
        return self.samples[self.at] if self.at < len(self.samples) else None

    def _show(self) -> None:
        s = self.current
        head = Text()
        head.append(f"label {line(self.run['name'])}", style="bold")
        left = len(self.samples) - self.at
        head.append(f" · {self.done} labelled now · {left} to go · y yes · n no · s skip · "
                    "m note", style="dim")
        self.query_one("#label-head", Heading).update(head)
        question = Text()
        body = Text()
        if s is None and questions_of(self.run) == {}:
            question.append("Nothing to label.", style="bold")
            body.append("Every item of this run is a deterministic check: there is no judge "
                        "to calibrate. Labels are for items an LLM judges (a `question` "
                        "without a check).", style="dim")
        elif s is None:
            question.append("Nothing left to label.", style="bold green")
            body.append(f"Every judged answer of the newest experiments is labelled. "
                        f"`autoresearch-tui judge-report {line(self.run['name'])}` compares "
                        "the judge with them.", style="dim")
        else:
            question.append(f"{line(s.item)}: ", style="bold")
            question.append(line(s.question) or "(the spec no longer has this item)")
            if s.contested:
                question.append("\nthe judge answered this both ways", style="yellow")
            question.append(f"\n#{s.exp_id} · input {line(s.input)[:60]!r} · sample {s.sample}",
                            style="dim")
            if s.output is not None:
                body.append(shown(s.output))  # a model's output: shown, never obeyed
            else:
                body.append("(the output is not in the store; the judge's evidence:)\n",
                            style="dim")
                body.append(shown(s.evidence) or "(none)")
        self.query_one("#label-question", Static).update(question)
        self.query_one("#label-output", Static).update(body)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("answer", "skip", "note") and self.current is None:
            return None  # dimmed: nothing to label
        return True

    def action_answer(self, yes: bool) -> None:
        s = self.current
        if s is None:
            return
        note = self.note
        written_soon(self.app, lambda: write_label(self.store, s, yes, note))
        judge = {True: "yes", False: "no", None: "no clear answer"}[s.passed]
        self.notify(f"{line(s.item)}: you said {'yes' if yes else 'no'}, the judge said {judge}",
                    timeout=3)
        self.done += 1
        self._next()

    def action_skip(self) -> None:
        self._next()

    def _next(self) -> None:
        self.at += 1
        self.note = ""
        note = self.query_one(Input)
        note.value = ""
        self._show()
        self.refresh_bindings()

    def action_note(self) -> None:
        note = self.query_one(Input)
        note.can_focus = True
        note.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.note = event.value.strip()
        event.input.can_focus = False
        self.set_focus(None)

    def action_leave(self) -> None:
        note = self.query_one(Input)
        if note.has_focus:  # escape leaves the note, not the screen
            note.can_focus = False
            self.set_focus(None)
            return
        if self.standalone:
            self.app.exit()
        else:
            self.app.pop_screen()


class LabelApp(App[None]):
    """`autoresearch-tui label RUN`: the labelling screen on its own."""

    TITLE = "autoresearch-tui label"

    def __init__(self, store: Store, run_name: str) -> None:
        super().__init__()
        self.store = store
        self.screen_ = LabelScreen(store, run_name, standalone=True)  # a bad name fails here

    def on_mount(self) -> None:
        self.push_screen(self.screen_)


def cmd_label(db: Any, run_name: str) -> int:
    from engine.model import UserError

    if not db.exists():
        raise UserError(f"{db}: no such store (pass --db, or start a run first)")
    store = Store(db)
    try:
        LabelApp(store, run_name).run()
    finally:
        store.close()
    return 0
