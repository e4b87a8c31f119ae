"""Messages widgets post up to the app (nouns or past-tense events, as in toolong)."""

from __future__ import annotations

from textual.message import Message


class RunSelected(Message):
    """The person moved to another run in the runs pane."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id

    def can_replace(self, message: Message) -> bool:
        # A held Down's repeats: only the run it stops on is worth loading.
        return isinstance(message, RunSelected)


class RunChosen(Message):
    """Enter (or a double click) on a run in the runs pane."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class ExperimentChosen(Message):
    """Enter on a changelog row: open that experiment."""

    def __init__(self, exp_id: int) -> None:
        super().__init__()
        self.exp_id = exp_id


class OlderRowsWanted(Message):
    """The changelog's cursor neared its last loaded row: page in older experiments."""

    def __init__(self, before_id: int) -> None:
        super().__init__()
        self.before_id = before_id

    def can_replace(self, message: Message) -> bool:
        # Scrolling fires this on every row; one queued request is enough.
        return isinstance(message, OlderRowsWanted)


class FilterChanged(Message):
    """The changelog filter's text changed (already debounced)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FilterChanged)


class StoreChanged(Message):
    """The in-process engine says something changed: poll the store now."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreChanged)

