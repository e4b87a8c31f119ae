"""Secrets never reach the store: values of secret-looking environment variables (API keys,
tokens, passwords) are replaced wherever text is written — log tails, events, evidence,
diffs — whatever printed them (an evaluation running `env`, a model repeating a key)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
#: Shorter values are too likely to be ordinary words or numbers to replace.
MIN_SECRET_LEN = 12
MASK = "[redacted]"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def make_redactor(environ: dict[str, str] | None = None) -> Callable[[str | None], str | None]:
    """A function that masks this environment's secret values in a text (None passes)."""
    values = secret_values(environ)
    if not values:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(v) for v in values))

    def redact(text: str | None) -> str | None:
        return pattern.sub(MASK, text) if text else text

    return redact
