"""What every spec model shares: unknown keys are errors (`Strict`), a regex must compile,
and `SpecError`, the one-line message a spec that cannot run gets."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from engine.model import UserError
from engine.text import printable


class SpecError(UserError):
    """A spec that cannot run. The message is one line: `file:line: field: problem`; user
    text quoted in it (a key with a line break, U+2028, a carriage return) is shown, never
    allowed to break the line."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message, one_line=True))


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")


def compiled(regex: str | None) -> str | None:
    """A spec's regex, refused with a message when it does not compile."""
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"regex does not compile: {exc}") from None
    return regex
