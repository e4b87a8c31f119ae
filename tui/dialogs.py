"""Small modal dialogs: confirm a destructive step, ask for a line of text (guidance, an
export path), and pick a spec to start a run from. All keyboard-driven; Escape cancels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Generic

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.screen import ScreenResultType as ResultType
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from engine.model import UserError
from tui.safe import markup

if TYPE_CHECKING:
    from engine.spec import Spec  # noqa: F401 - named in a string type argument

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 72; max-width: 95%; height: auto; max-height: 90%;
    border: round $accent; background: $panel; padding: 0 1;
}}
{name} Label {{ width: 100%; }}  /* wraps at the dialog's width, never cut mid-word */
{name} .hint {{ color: $text-muted; }}
{name} .error {{ color: $error; }}
{name} OptionList {{ height: auto; max-height: 14; border: none; }}
"""


class Dialog(ModalScreen[ResultType], Generic[ResultType]):
    """A modal that answers once: a second Enter (or y) before it has closed — keys come in
    bursts over SSH — is ignored; dismissing twice ended the app (ScreenStackError)."""

    _answered = False

    def answer(self, result: ResultType | None) -> None:
        if not self._answered:
            self._answered = True
            self.dismiss(result)


class ConfirmScreen(Dialog[bool]):
    """Yes or no: `y` / Enter confirms, `n` / Escape cancels."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS = [Binding("y,enter", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(markup(self.question))
            if self.detail:
                yield Label(markup(self.detail), classes="hint")
            yield Label("y / enter: yes    n / esc: no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.answer(yes)


class PromptScreen(Dialog[str | None]):
    """One line of text; Enter sends it, Escape cancels."""

    DEFAULT_CSS = DIALOG_CSS.format(name="PromptScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, hint: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.hint = hint
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(markup(self.title_text))
            yield Input(value=self.value, placeholder=self.placeholder)
            yield Label(self.hint, classes="hint")

    @on(Input.Submitted)
    def _send(self, event: Input.Submitted) -> None:
        event.stop()
        self.answer(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.answer(None)


def find_specs(root: Path) -> list[Path]:
    """Spec files under `root/checklists/` (the ready-to-run ones a user starts from)."""
    folder = root / "checklists"
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob("*.y*ml") if p.suffix in (".yaml", ".yml")]
    # A spec sits next to its target folder; YAML inside a target (params files) is not one.
    return sorted(p for p in found if (p.parent / p.stem).is_dir() or p.parent == folder
                  or _looks_like_spec(p))


def _looks_like_spec(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8")[:4000]
    except OSError:
        return False
    return "\nmutator:" in head and "\nevaluate:" in head


class NewRunScreen(Dialog["Spec | None"]):
    """Pick a spec from `checklists/` or type a path; it is validated before it is returned."""

    DEFAULT_CSS = DIALOG_CSS.format(name="NewRunScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.specs = find_specs(root)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Start a run")
            if self.specs:
                yield OptionList(*[Option(markup(_rel(p, self.root)), id=str(i))
                                   for i, p in enumerate(self.specs)])
            else:
                yield Label(f"No specs in {markup(self.root / 'checklists')}.", classes="hint")
            yield Input(placeholder="…or a spec path, then enter")
            yield Label("", classes="error")
            yield Label("enter: start    tab: list / path    esc: cancel", classes="hint")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._try(self.specs[int(event.option.id or 0)])

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self._try(Path(event.value.strip()).expanduser())

    def _try(self, path: Path) -> None:
        from engine.templates import load_runnable

        try:  # a shipped template runs on a copy beside the store (engine/templates.py)
            spec, note = load_runnable(path, getattr(self.app, "db", Path("autoresearch.db")))
        except UserError as exc:
            self.query_one(".error", Label).update(markup(exc))
            return
        if note:
            self.app.notify(markup(note), title="template")
        self.answer(spec)

    def action_cancel(self) -> None:
        self.answer(None)


def _rel(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return path
